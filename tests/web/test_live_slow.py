"""A viewer that stops reading its stream holds up nobody, and is let go.

The app is served by Hypercorn in this process, over real sockets, with the data versions
service replaced by a stand-in that the test changes as fast as it likes, and renders ahead
left out: filling a stalled connection's buffers (the kernel alone takes 1-4 MB on loopback)
takes tens of thousands of notices, far more than real checks and renders would make in the
time of a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

import figserve.app
import figserve.services
from figserve.figures import FIGURES
from tests.support.live import free_port
from tests.support.prometheus import metric
from tests.support.sse import EventStream, stream_url
from tests.support.versions import FakeVersions

pytestmark = pytest.mark.live
WAVES = FIGURES.get("waves")
FIGURES_SHOWN = 150  # as many as one request line holds


@asynccontextmanager
async def served(app, port: int) -> AsyncIterator[None]:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        assert not task.done() and time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_viewer_that_stops_reading_holds_up_nobody(monkeypatch, tmp_path: Path):
    versions = FakeVersions()

    @asynccontextmanager
    async def stand_in(*args: object, **kwargs: object) -> AsyncIterator[FakeVersions]:
        yield versions

    monkeypatch.setattr(figserve.services, "serving_versions", stand_in)
    app = figserve.app.create_app(
        {
            "warm_up": False,
            "render_processes": 1,
            "jobs_dir": str(tmp_path / "jobs"),
            "live_send_timeout": 1.0,
            "live_max_figures": FIGURES_SHOWN,
        }
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Many figures: each change of all of them is one message of many notices.
    params = [WAVES.params(frequency=round(0.1 + i / 10, 1)) for i in range(FIGURES_SHOWN)]
    targets = [f"/figures/waves.png?frequency={p.frequency:g}" for p in params]
    a, b = "a" * 60, "b" * 60  # long data versions: long pins, more bytes per notice
    for p in params:
        versions.set(WAVES, p, a, tell=False)
    async with served(app, port):
        hub = app.extensions["figserve"].streams

        async def no_render(job: object) -> None:
            pass

        hub._render = no_render
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # a tiny window
        stalled.connect(("127.0.0.1", port))
        path = stream_url("", *targets)
        stalled.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # then never reads
        try:
            async with EventStream(stream_url(base, *targets)) as quick:
                await quick.wait_for(lambda: len(quick.pins()) == FIGURES_SHOWN, "the first pins")
                assert len(hub.streams) == 2
                slowest = 0.0
                for turn in range(2000):
                    data = b if turn % 2 == 0 else a
                    t0 = time.monotonic()
                    for p in params:
                        versions.set(WAVES, p, data)
                    await quick.wait_for(
                        lambda d=data: set(quick.pins().values()) == {f"p-{d}"},
                        f"turn {turn}",
                        timeout=30,
                    )
                    slowest = max(slowest, time.monotonic() - t0)
                    if len(hub.streams) == 1:
                        break
                else:
                    raise AssertionError("the stalled stream was never let go")
                # The stalled viewer held its connection's buffers full for a second...
                assert turn > 10, turn
                # ... and the one that reads was told of every turn at once all along.
                assert slowest < 2.0, slowest
                text = (await asyncio.to_thread(_metrics, base)).decode()
                assert metric(text, "figserve_live_streams_ended_total", reason="stalled") == 1
                assert metric(text, "figserve_live_streams") == 1
        finally:
            stalled.close()


def _metrics(base: str) -> bytes:
    from urllib.request import urlopen

    with urlopen(f"{base}/metrics", timeout=10) as r:
        return r.read()
