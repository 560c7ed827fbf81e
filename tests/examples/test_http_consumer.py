"""The http_consumer example: an ``http.request`` consumer answers every request with
"Hello world! You asked for <path>", in-process and behind a real ``chanlite serve``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from chanlite import Chanlite, Message, Routes
from chanlite.testing import ChanliteTestClient
from examples.http_consumer import app as hello
from tests.e2e.server import Served, serve


@pytest.fixture
def client() -> Iterator[ChanliteTestClient]:
    with ChanliteTestClient(Chanlite(hello.routes)) as test_client:
        yield test_client


def test_the_table_sends_every_request_to_the_consumer() -> None:
    table = Routes(hello.routes)
    for path in ("/", "/anything/at/all"):
        found = table.match(Message({"path": path, "method": "GET"}, "http.request"))
        assert found is not None and found[0] is hello.http_consumer


@pytest.mark.parametrize("path", ["/", "/hello/", "/a/b/c", "/no-trailing-slash"])
def test_any_path_gets_hello_world(client: ChanliteTestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.text == f"Hello world! You asked for {path}"
    assert response.headers["content-type"].startswith("text/plain")


def test_any_method_and_the_decoded_path(client: ChanliteTestClient) -> None:
    response = client.post("/caf%C3%A9/", content=b"ignored body")
    assert response.status_code == 200
    assert response.text == "Hello world! You asked for /café/"


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with serve("examples.http_consumer.app:routes") as served:
        yield served


@pytest.mark.parametrize("path", ["/", "/hello/there", "/deep/path/?x=1"])
def test_served_by_chanlite_serve(server: Served, path: str) -> None:
    response = httpx.get(f"{server.http}{path}")
    assert response.status_code == 200
    assert response.text == f"Hello world! You asked for {path.split('?')[0]}"


def test_served_post_is_answered_too(server: Served) -> None:
    response = httpx.post(f"{server.http}/submit", content=b"x" * 1000)
    assert response.status_code == 200
    assert response.text == "Hello world! You asked for /submit"
