"""The background example: ``POST /jobs`` answers 202 at once after queueing the job
on the ``jobs`` channel; a slow ``def`` consumer does the work and the result reaches
the browser's socket through its per-client group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

from chanlite import Chanlite, Group
from chanlite.testing import ChanliteTestClient
from examples.background import app as background
from tests.conftest import require_browser
from tests.e2e.server import ROOT, START_TIMEOUT, Served, run_cli, serve

#: Client ids as the page makes them: 32 hex digits.
ALICE, BOB = "a1" * 16, "b2" * 16
#: How long a test waits for a job's messages.
RECEIVE_TIMEOUT = 10.0
#: The states a job reports, in order.
STATES = ("running", "done")
#: How long a browser page may take to show what a test waits for, in ms.
WAIT_MS = 30_000
SECRET = {"CHANLITE_SECRET_KEY": "background-example-test-secret-0123456789"}


@pytest.fixture
def client() -> Iterator[ChanliteTestClient]:
    with ChanliteTestClient(Chanlite(background.routes, app=background.site)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("limit", "primes"), [(2, 0), (3, 1), (10, 4), (100, 25), (1000, 168), (1_000_000, 78498)]
)
def test_count_primes(limit: int, primes: int) -> None:
    assert background.count_primes(limit) == primes


def test_the_page_uses_the_chanlite_socket(client: ChanliteTestClient) -> None:
    page = client.get("/").text
    assert '<script src="/chanlite.js"></script>' in page
    assert "new ChanliteSocket(`/results/${client}/`" in page
    assert client.get("/chanlite.js").status_code == 200


def test_the_response_comes_back_while_the_job_is_still_running(
    client: ChanliteTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job's work waits for `release`, which is only set once the HTTP response is
    # in hand: a view that waited for the job would not answer before the gate gives
    # up, and `finished` would then be set when the response arrives.
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    count_primes = background.count_primes

    def gated(limit: int) -> int:
        started.set()
        release.wait(RECEIVE_TIMEOUT)
        finished.set()
        return count_primes(limit)

    monkeypatch.setattr(background, "count_primes", gated)
    with client.websocket_connect(f"/results/{ALICE}/") as ws:
        response = client.post("/jobs", json={"client": ALICE, "limit": 100, "seconds": 0})
        assert response.status_code == 202
        assert not finished.is_set()
        job = response.json()["job"]
        assert json.loads(ws.receive_text()) == {"job": job, "state": "running"}
        assert started.wait(RECEIVE_TIMEOUT)
        release.set()
        result = json.loads(ws.receive_text())
    assert finished.is_set()
    assert result["job"] == job and result["state"] == "done"
    assert (result["limit"], result["primes"]) == (100, 25)


def test_results_reach_only_their_own_browser_on_every_socket(client: ChanliteTestClient) -> None:
    with (
        client.websocket_connect(f"/results/{ALICE}/") as alice_tab,
        client.websocket_connect(f"/results/{ALICE}/") as alice_other_tab,
        client.websocket_connect(f"/results/{BOB}/") as bob_tab,
    ):
        alice_job = client.post("/jobs", json={"client": ALICE, "limit": 10}).json()["job"]
        bob_job = client.post("/jobs", json={"client": BOB, "limit": 1000}).json()["job"]
        alice_seen = [json.loads(alice_tab.receive_text()) for _ in range(2)]
        assert [json.loads(alice_other_tab.receive_text()) for _ in range(2)] == alice_seen
        bob_seen = [json.loads(bob_tab.receive_text()) for _ in range(2)]
    assert [(m["job"], m["state"]) for m in alice_seen] == [(alice_job, s) for s in STATES]
    assert [(m["job"], m["state"]) for m in bob_seen] == [(bob_job, s) for s in STATES]
    assert (alice_seen[1]["primes"], bob_seen[1]["primes"]) == (4, 168)


def test_a_form_post_starts_a_job(client: ChanliteTestClient) -> None:
    with client.websocket_connect(f"/results/{ALICE}/") as ws:
        response = client.post("/jobs", data={"client": ALICE, "limit": "100", "seconds": "0"})
        assert response.status_code == 202
        job = response.json()["job"]
        messages = [json.loads(ws.receive_text()) for _ in range(2)]
    assert [(m["job"], m["state"]) for m in messages] == [(job, "running"), (job, "done")]


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ({"client": "short", "limit": 10}, "client"),
        ({"client": ALICE + "/x", "limit": 10}, "client"),
        ({"limit": 10}, "client"),
        ({"client": ALICE, "limit": 1}, "limit"),
        ({"client": ALICE, "limit": 10.5}, "limit"),
        ({"client": ALICE, "limit": background.MAX_LIMIT + 1}, "limit"),
        ({"client": ALICE, "limit": True}, "limit"),
        ({"client": ALICE, "limit": "1e400"}, "limit"),
        ({"client": ALICE, "limit": 10, "seconds": -1}, "seconds"),
        ({"client": ALICE, "limit": 10, "seconds": background.MAX_SECONDS + 1}, "seconds"),
        ({"client": ALICE, "limit": 10, "seconds": "NaN"}, "seconds"),
        (["not", "an", "object"], "object"),
    ],
)
def test_bad_jobs_are_refused(client: ChanliteTestClient, job: Any, error: str) -> None:
    with client.websocket_connect(f"/results/{ALICE}/"):
        response = client.post("/jobs", json=job)
    assert response.status_code == 400
    assert error in response.text


def test_a_job_nobody_would_hear_about_is_refused(client: ChanliteTestClient) -> None:
    response = client.post("/jobs", json={"client": ALICE, "limit": 10})
    assert response.status_code == 409
    assert client.channel_receive(background.JOBS, timeout=0) is None


def test_jobs_wait_on_the_channel_and_a_full_channel_gives_503() -> None:
    # No workers: the first job stays on the channel, which holds one message.
    app = Chanlite(
        background.routes,
        app=background.site,
        layer="memory://?capacity=1",
        workers=False,
        secret_key=SECRET["CHANLITE_SECRET_KEY"],
    )
    with ChanliteTestClient(app) as client:
        Group(background.browser_group(ALICE)).add(client.new_channel())
        job = {"client": ALICE, "limit": 10, "seconds": 0.5}
        first = client.post("/jobs", json=job)
        assert first.status_code == 202
        refused = client.post("/jobs", json=job)
        assert refused.status_code == 503
        assert "too many jobs" in refused.text
        queued_job = client.channel_receive(background.JOBS, timeout=0)
    assert queued_job == {**job, "job": first.json()["job"]}


@pytest.mark.parametrize("client_id", ["short", "x" * 65, "bad.char.in.id.here"])
def test_sockets_with_a_malformed_client_id_are_closed_with_4400(
    client: ChanliteTestClient, client_id: str
) -> None:
    with (
        client.websocket_connect(f"/results/{client_id}/") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == background.BAD_CLIENT_ID
    client.run_until_idle()
    assert client.group_channels(background.browser_group(client_id)) == set()


def test_a_closed_socket_leaves_its_browser_group(client: ChanliteTestClient) -> None:
    group = background.browser_group(ALICE)
    with client.websocket_connect(f"/results/{ALICE}/"):
        assert len(client.group_channels(group)) == 1
    client.run_until_idle()
    assert client.group_channels(group) == set()


# -- real processes ------------------------------------------------------------------


async def job_messages(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` JSON frames from ``ws``."""
    frames = [await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT) for _ in range(count)]
    return [json.loads(frame) for frame in frames]


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with serve("examples.background.app:app") as served:
        yield served


@pytest.mark.anyio
async def test_served_job_result_arrives_over_the_socket(server: Served) -> None:
    async with (
        connect(f"{server.ws}/results/{ALICE}/") as ws,
        httpx.AsyncClient(base_url=server.http) as http,
    ):
        response = await http.post("/jobs", json={"client": ALICE, "limit": 1000, "seconds": 0})
        assert response.status_code == 202
        job = response.json()["job"]
        running, done = await job_messages(ws, 2)
    assert running == {"job": job, "state": "running"}
    assert (done["job"], done["state"], done["primes"]) == (job, "done", 168)


class WorkerProcess:
    """``chanlite worker`` for the example over ``layer``, its output collected."""

    def __init__(self, layer: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "chanlite", "worker", "examples.background.app:app"),
                *("--layer", layer, *options),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **SECRET},
        )
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "worker listening on" in line:
                self._listening.set()

    def wait_listening(self) -> None:
        """Return once the worker takes messages; raise if it does not start."""
        if not self._listening.wait(START_TIMEOUT):
            raise RuntimeError("chanlite worker did not start:\n" + "".join(self.lines))

    def stop(self) -> int:
        """SIGTERM the worker and return its exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def queued(layer: str, channel: str) -> int:
    """How many messages wait on ``channel``, from ``chanlite stats``."""
    stats = run_cli("stats", "--layer", layer)
    assert stats.returncode == 0, stats.stderr
    for line in stats.stdout.splitlines():
        name, _, size = line.strip().partition(" ")
        if name == channel:
            return int(size)
    return 0


@pytest.mark.anyio
async def test_job_waits_for_a_job_worker_while_the_view_has_answered(tmp_path: Path) -> None:
    # Interface, socket workers and job workers as separate processes over SQLite. No
    # process takes `jobs` when the view answers, so the job cannot even have started:
    # it waits on the channel until a job worker comes up, then its result reaches
    # the socket.
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    socket_worker = WorkerProcess(layer, "--exclude-channels", background.JOBS)
    workers = [socket_worker]
    try:
        # With no in-process worker, the socket's connect waits for this one.
        await asyncio.to_thread(socket_worker.wait_listening)
        with serve(
            "examples.background.app:app", "--no-worker", "--layer", layer, env=SECRET
        ) as served:
            async with (
                connect(f"{served.ws}/results/{ALICE}/") as ws,
                httpx.AsyncClient(base_url=served.http) as http,
            ):
                job = {"client": ALICE, "limit": 100, "seconds": 0}
                response = await http.post("/jobs", json=job)
                assert response.status_code == 202
                assert await asyncio.to_thread(queued, layer, background.JOBS) == 1
                job_worker = WorkerProcess(layer, "--only-channels", background.JOBS)
                workers.append(job_worker)
                await asyncio.to_thread(job_worker.wait_listening)
                running, done = await job_messages(ws, 2)
        assert await asyncio.to_thread(queued, layer, background.JOBS) == 0
    finally:
        codes = [worker.stop() for worker in workers]
    assert running == {"job": response.json()["job"], "state": "running"}
    assert (done["state"], done["primes"]) == ("done", 25)
    assert codes == [0, 0], ["".join(worker.lines) for worker in workers]


# -- in a real browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.browser
def test_a_page_starts_jobs_and_shows_their_results(browser: Browser, server: Served) -> None:
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(f"{server.http}/")
        expect(page.locator("#state")).to_have_text("open", timeout=WAIT_MS)
        page.get_by_label("limit").fill("1000")
        page.get_by_label("seconds").fill("0")
        page.get_by_role("button", name="Start job").click()
        row = page.locator("#jobs tr").first
        expect(row.locator("td").nth(1)).to_have_text("done", timeout=WAIT_MS)
        expect(row.locator("td").nth(2)).to_contain_text("168 primes below 1000")
        # A job the server refuses says why, next to the form.
        page.evaluate("document.getElementById('start').noValidate = true")
        page.get_by_label("limit").fill("1")
        page.get_by_role("button", name="Start job").click()
        expect(page.locator("#error")).to_contain_text("limit must be", timeout=WAIT_MS)
        assert page.locator("#jobs tr").count() == 1
    finally:
        page.close()
