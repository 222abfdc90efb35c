"""The server as shipped, a real Hypercorn on 127.0.0.1: images of a page side by side, errors,
logs, overload, metrics summed over workers, and stopping with SIGTERM, renders in flight.

Renders that must stay in flight use the test-only figure ``gated`` (``tests/support/gates.py``):
they block in their render process until the test opens their gate."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import decode
from tests.support.app import worker_of
from tests.support.gates import Gate
from tests.support.html import image_urls
from tests.support.live import LiveServer
from tests.support.procs import alive, group_pids
from tests.support.prometheus import metric
from tests.support.waiting import until_sync

pytestmark = pytest.mark.live


async def test_all_images_of_a_page_load_concurrently(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        page = await http.get("/normal/5_3")
        assert page.status_code == 200
        # Every image at 1x and 2x, in PNG and in the WebP beside it, all at once: more than
        # a browser asks for (one of them per image), within the render queue's limit.
        urls = [u for u in image_urls(page.text) if "dpr=" not in u or u.endswith("dpr=2")]
        assert len(urls) >= 24
        responses = await asyncio.gather(*(http.get(u) for u in urls))
    assert [r.status_code for r in responses] == [200] * len(urls)
    for url, resp in zip(urls, responses, strict=True):
        webp = "format=webp" in url
        assert resp.headers["content-type"] == ("image/webp" if webp else "image/png")
        dpr = float(re.search(r"dpr=([0-9.]+)", url).group(1)) if "dpr=" in url else 1.0
        assert decode(resp.content).size == (round(400 * dpr), round(300 * dpr)), url


async def test_live_errors_are_4xx_not_5xx(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for path in ["/normal/abc", "/normal/5_3_1", "/fig/x_1", "/fig/5_0", "/fig/nan_1"]:
            assert (await http.get(path)).status_code == 400
        assert (await http.get("/nothing")).status_code == 404


def test_access_log_records_requests(server):
    with httpx.Client(base_url=server.url) as http:
        http.get("/healthz?probe=access-log")
    server.wait_for('"GET /healthz?probe=access-log 1.1" 200', timeout=10)


pytestmark = pytest.mark.live


@contextlib.contextmanager
def gated_server(
    gate: Gate, workers: int, env: dict[str, str], args: tuple[str, ...] = ()
) -> Iterator[LiveServer]:
    server = LiveServer(
        workers=workers,
        app="tests.support.app:app",
        env={"FIGSERVE_RENDER_TIMEOUT": "60", **env},
        args=args,
    )
    try:
        yield server.start()
    except BaseException:
        print(f"server output (last lines):\n{server.output[-6000:]}")  # shown on failure
        raise
    finally:
        gate.open()  # never leave a render blocked behind a failed test
        if server.proc.poll() is None:
            server.stop()


def gated(gate: Gate, tag: str) -> str:
    return f"/figures/gated.png?{gate.query(tag)}"


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def fetch(server: LiveServer, path: str, headers: dict[str, str] | None = None) -> Reply:
    """One request on a connection of its own; a dropped connection is status 0."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=90)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    except (ConnectionError, http.client.HTTPException) as exc:
        return Reply(0, http.client.HTTPMessage(), repr(exc).encode())
    finally:
        conn.close()


def fetch_on(conn: http.client.HTTPConnection, path: str) -> Reply:
    """One request on an open connection; a dropped connection is status 0."""
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    except (ConnectionError, http.client.HTTPException) as exc:
        return Reply(0, http.client.HTTPMessage(), repr(exc).encode())


def scrape(server: LiveServer) -> str:
    reply = fetch(server, "/metrics")
    assert reply.status == 200
    return reply.body.decode()


def test_overload_sheds_503_with_retry_after_while_health_answers(gate: Gate) -> None:
    env = {"FIGSERVE_RENDER_PROCESSES": "2", "FIGSERVE_RENDER_QUEUE_LIMIT": "2"}
    with gated_server(gate, 2, env) as server, ThreadPoolExecutor(24) as pool:
        accepts = ["image/avif,image/webp,image/*,*/*;q=0.8", "application/json"]
        flood = [
            pool.submit(fetch, server, gated(gate, f"f{i}"), {"Accept": accepts[i % 2]})
            for i in range(24)
        ]
        # Admitted renders all run (limit = processes), so each is either shed or started.
        until_sync(
            lambda: sum(f.done() for f in flood) + len(gate.started()) == len(flood),
            "every request to be shed or started",
        )
        shed = [(i, f.result()) for i, f in enumerate(flood) if f.done()]
        assert len(shed) >= len(flood) - 4  # at most 2 workers x 2 admitted
        for i, reply in shed:
            assert reply.status == 503
            assert reply.headers["Retry-After"] == "1"
            expected = "image/svg+xml" if i % 2 == 0 else "application/problem+json"
            assert reply.headers["Content-Type"].startswith(expected)

        # During the flood: health, readiness, pages and metrics answer.
        for path in ("/healthz", "/readyz", "/"):
            assert fetch(server, path).status == 200, path
        text = scrape(server)
        assert metric(text, "figserve_renders_rejected_total") == len(shed)
        assert metric(text, "figserve_renders_in_flight") == len(gate.started())

        gate.open()
        shed_ids = {i for i, _ in shed}
        admitted = [f.result(timeout=60) for i, f in enumerate(flood) if i not in shed_ids]
        assert [r.status for r in admitted] == [200] * len(admitted)  # no other 5xx
        assert all(r.body.startswith(b"\x89PNG") for r in admitted)


def test_renders_of_clients_that_disconnect_before_their_turn_never_run(gate: Gate) -> None:
    env = {"FIGSERVE_RENDER_PROCESSES": "1", "FIGSERVE_RENDER_QUEUE_LIMIT": "10"}
    with gated_server(gate, 1, env) as server, ThreadPoolExecutor(1) as pool:
        first = pool.submit(fetch, server, gated(gate, "first"))
        until_sync(lambda: len(gate.started()) == 1, "the first render to start")
        leaving = []
        for i in range(4):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            request = f"GET {gated(gate, f'q{i}')} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            sock.sendall(request.encode())
            leaving.append(sock)
        until_sync(
            lambda: metric(scrape(server), "figserve_render_queue_depth") == 4, "4 queued renders"
        )
        for sock in leaving:
            sock.close()  # the browser navigated away
        until_sync(
            lambda: metric(scrape(server), "figserve_renders_cancelled_total") == 4,
            "4 cancelled renders",
        )
        gate.open()
        assert first.result(timeout=60).status == 200
        text = scrape(server)
        assert metric(text, "figserve_renders_started_total", figure="gated") == 1
        assert metric(text, "figserve_render_queue_depth") == 0
        assert gate.started() == ["first"]  # the 4 abandoned renders never ran


def test_metrics_are_summed_over_both_workers(gate: Gate) -> None:
    with gated_server(gate, 2, {}) as server:
        served: Counter[str] = Counter()
        for _ in range(200):  # connections land on either worker; stop once both served some
            reply = fetch(server, "/figures/normal.png?w=60&h=60")
            assert reply.status == 200
            served[reply.headers["X-Test-Worker"]] += 1
            if len(served) == 2 and min(served.values()) >= 3:
                break
        assert len(served) == 2, f"one worker served everything: {served}"
        total = sum(served.values())

        scraped_by: set[str] = set()
        for scrapes in range(50):
            reply = fetch(server, "/metrics")
            text = reply.body.decode()
            route = "/figures/normal.<fmt>"
            assert metric(text, "figserve_http_requests_total", route=route, status="200") == total
            assert metric(text, "figserve_http_requests_total", route="/metrics") == scrapes
            assert metric(text, "figserve_renders_started_total", figure="normal") == total
            count = "figserve_render_duration_seconds_count"
            assert metric(text, count, figure="normal", format="png") == total
            assert metric(text, "figserve_render_queue_depth") == 0
            assert metric(text, "figserve_renders_in_flight") == 0
            scraped_by.add(reply.headers["X-Test-Worker"])
            if scraped_by == set(served):
                break
        assert scraped_by == set(served)  # each worker's answer holds the other's counts too


@pytest.mark.parametrize("target", ["master", "process-group"])
def test_sigterm_stops_gracefully_and_every_started_response_completes(
    gate: Gate, target: str
) -> None:
    env = {"FIGSERVE_RENDER_PROCESSES": "2"}  # two renders per worker, both drawing
    # A long keep-alive, so an idle connection closes only because its worker is stopping.
    with (
        gated_server(gate, 2, env, args=("--keep-alive", "300")) as server,
        ThreadPoolExecutor(24) as pool,
        contextlib.ExitStack() as connections,
    ):
        # Connections sorted by the worker that accepted them: per worker, one stays idle and
        # two carry a render, so both workers have renders in flight whichever accepts more.
        idle: dict[int, http.client.HTTPConnection] = {}
        busy: dict[int, list[http.client.HTTPConnection]] = {}
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=90)
            connections.callback(conn.close)
            conn.request("GET", "/readyz")  # routed, so it names its worker
            resp = conn.getresponse()
            resp.read()
            pid = int(resp.headers["X-Test-Worker"])
            if pid not in idle:
                idle[pid] = conn
            elif len(busy.setdefault(pid, [])) < 2:
                busy[pid].append(conn)
            else:
                conn.close()
            if len(busy) == 2 and all(len(c) == 2 for c in busy.values()):
                break
        assert len(idle) == 2 and sorted(busy) == sorted(idle)
        first, second = sorted(idle)

        in_flight: list[Future[Reply]] = []
        for i, conn in enumerate(c for conns in busy.values() for c in conns):
            in_flight.append(pool.submit(fetch_on, conn, gated(gate, f"r{i}")))
        until_sync(lambda: len(gate.started()) == len(in_flight), "renders to start")
        workers: dict[str, int] = {}  # tag -> worker whose render process draws it
        for marker in gate.folder.glob("started-*"):
            _, pid, tag, _ = marker.name.split("-")
            workers.setdefault(tag, worker_of(int(pid)))
        assert set(workers.values()) == {first, second}

        if target == "master":
            server.proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(server.proc.pid, signal.SIGTERM)

        # Each worker has begun stopping: it closes its idle keep-alive connection.
        for conn in idle.values():
            assert conn.sock is not None
            conn.sock.settimeout(30)
            assert conn.sock.recv(1) == b""
            conn.close()

        # One worker finishes; Hypercorn's master then sends SIGTERM to the other, which must
        # go on finishing its own in-flight responses.
        for tag, worker in workers.items():
            if worker == first:
                gate.let_through(tag)
        until_sync(lambda: not alive(first), "the first worker to exit", timeout=30)
        sigterms = 2 if target == "process-group" else 1
        until_sync(
            lambda: (
                server.output.count(f"worker {second} got SIGTERM") >= sigterms or not alive(second)
            ),  # how a worker without the fix takes it
            "the master's SIGTERM to the second worker",
        )
        for tag, worker in workers.items():
            if worker == second:
                gate.let_through(tag)

        replies = [f.result(timeout=60) for f in in_flight]
        lost = [r.body for r in replies if r.status != 200]
        assert not lost, f"{len(lost)} of {len(replies)} in-flight responses lost: {lost[:2]}"
        for reply in replies:
            assert decode(reply.body).format == "PNG"
        assert server.proc.wait(timeout=60) == 0
        assert not alive(second)
        assert server.output.count("render pool closed") == 2


@pytest.mark.parametrize("target", ["master", "process-group"])
def test_sigterm_with_a_runaway_render_ends_every_process_within_the_grace_time(
    gate: Gate, target: str
) -> None:
    grace = 3
    args = ("--graceful-timeout", str(grace))
    with gated_server(gate, 2, {}, args=args) as server, ThreadPoolExecutor(1) as pool:
        runaway = pool.submit(fetch, server, f"/figures/spin.png?{gate.query('r')}")
        until_sync(lambda: gate.started(), "the runaway render to start")
        processes = group_pids(server.proc.pid)
        # master, 2 workers, and per worker a fork server with its render processes
        assert len(processes) >= 1 + 2 * 3
        started = time.monotonic()
        if target == "master":
            server.proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=grace + 10) == 0
        took = time.monotonic() - started
        assert took < grace + 3, f"the stop took {took:.1f} s with a {grace} s grace time"
        until_sync(lambda: not group_pids(server.proc.pid), "every process to end", timeout=5)
        reply = runaway.result(timeout=10)
        assert reply.status in {0, 503}  # cut at the grace time: never a 200 or a 500


def test_the_images_of_one_page_are_drawn_by_more_than_one_process(gate: Gate) -> None:
    # One worker: every connection of the page lands on it, as a browser's often do.
    env = {"FIGSERVE_RENDER_PROCESSES": "2"}
    with gated_server(gate, 1, env) as server, ThreadPoolExecutor(6) as pool:
        images = [pool.submit(fetch, server, gated(gate, f"i{i}")) for i in range(6)]
        # Two renders are in flight at once, in two processes of the one worker.
        until_sync(lambda: len(gate.pids()) == 2, "two images drawn side by side")
        gate.open()
        assert [f.result(timeout=60).status for f in images] == [200] * 6
        assert len(gate.pids()) == 2
