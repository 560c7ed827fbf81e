"""``chanlite.static.javascript_route``: chanlite.js served from the package.

How the client behaves in a browser is tested in ``tests/browser``.
"""

from __future__ import annotations

from importlib.resources import files

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from chanlite.static import JAVASCRIPT_PATH, javascript_route


@pytest.fixture
def client() -> TestClient:
    return TestClient(Starlette(routes=[javascript_route()]))


def test_the_file_is_part_of_the_package() -> None:
    shipped = files("chanlite.static").joinpath("chanlite.js")
    assert shipped.is_file()
    assert shipped.read_bytes() == JAVASCRIPT_PATH.read_bytes()


def test_the_file_is_ascii_and_defines_the_global() -> None:
    source = JAVASCRIPT_PATH.read_text("ascii")  # raises on anything else
    assert "global.ChanliteSocket = ChanliteSocket;" in source


def test_serves_the_file_as_javascript(client: TestClient) -> None:
    response = client.get("/chanlite.js")
    assert response.status_code == 200
    assert response.content == JAVASCRIPT_PATH.read_bytes()
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["etag"].startswith('"') and len(response.headers["etag"]) == 34


def test_head_gives_the_headers_only(client: TestClient) -> None:
    response = client.head("/chanlite.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.content == b""


def test_other_methods_are_not_allowed(client: TestClient) -> None:
    assert client.post("/chanlite.js").status_code == 405


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
)
def test_a_matching_etag_gives_304_without_a_body(client: TestClient, if_none_match: str) -> None:
    etag = client.get("/chanlite.js").headers["etag"]
    response = client.get(
        "/chanlite.js", headers={"if-none-match": if_none_match.format(etag=etag)}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "no-cache"


def test_another_etag_gives_the_file(client: TestClient) -> None:
    response = client.get("/chanlite.js", headers={"if-none-match": '"stale"'})
    assert response.status_code == 200
    assert response.content == JAVASCRIPT_PATH.read_bytes()


def test_the_path_can_be_chosen_and_the_route_is_named() -> None:
    app = Starlette(routes=[javascript_route("/static/chanlite-client.js")])
    client = TestClient(app)
    assert client.get("/static/chanlite-client.js").status_code == 200
    assert client.get("/chanlite.js").status_code == 404
    assert app.url_path_for("chanlite_js") == "/static/chanlite-client.js"
