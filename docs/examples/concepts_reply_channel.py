"""A background channel, a plain script that sends to it, and a reply channel that
carries the answers back."""

from __future__ import annotations

from chanlite import Channel, Message, Routes

routes = Routes()


@routes.consumer("squares")
def square(message: Message) -> None:
    # Any message may say where answers go: its reply_channel.
    message.reply_channel.send({"n": message["n"], "square": message["n"] ** 2})


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        reply_to = client.new_channel("results!")  # e.g. "results!k3J9x..."
        for n in (2, 3, 4):
            # Outside a consumer, send goes at once, on the running app's layer.
            Channel("squares").send({"n": n, "reply_channel": reply_to})
        # One read on "results!" receives from every channel under that prefix.
        answers = [client.channel_receive("results!") for _ in range(3)]
    squares = {answer["n"]: answer["square"] for answer in answers if answer}
    assert squares == {2: 4, 3: 9, 4: 16}, squares
    print("concepts_reply_channel:", squares)
