"""A chat in one file: every browser tab open on the page sees every message.

Save it as ``chat.py``, serve it with ``chanlite serve chat:app``, and open
http://127.0.0.1:8000/ in two tabs.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from chanlite import Chanlite, Group, Message, Routes

routes = Routes()


@routes.consumer("websocket.connect", path=r"^/chat/$")
def join(message: Message) -> None:
    Group("chat").add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive", path=r"^/chat/$")
def say(message: Message) -> None:
    Group("chat").send({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=r"^/chat/$")
def leave(message: Message) -> None:
    Group("chat").discard(message.reply_channel)


PAGE = """<!doctype html>
<title>chat</title>
<ul id="log"></ul>
<form id="say"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
<script>
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/chat/`);
  socket.onmessage = (event) => {
    const line = document.createElement("li");
    line.textContent = event.data;
    log.append(line);
  };
  say.onsubmit = (event) => {
    event.preventDefault();
    socket.send(text.value);
    text.value = "";
  };
</script>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


app = Chanlite(routes, app=Starlette(routes=[Route("/", page)]))


if __name__ == "__main__":
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(app) as client:
        assert "new WebSocket" in client.get("/").text
        with client.websocket_connect("/chat/") as one, client.websocket_connect("/chat/") as two:
            one.send_text("hello")
            assert one.receive_text() == two.receive_text() == "hello"
    print("index_chat: the page is served, and both sockets got 'hello'")
