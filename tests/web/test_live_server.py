"""Live streams on a real server: one render per change whatever the viewers, limits that answer
429 and 503, and a stop that ends every stream at once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.livepage import MeterFolder
from tests.support.prometheus import metric
from tests.support.sse import EventStream, stream_url

pytestmark = pytest.mark.live

PLAIN = "/figures/meter.png?w=400&h=300"
C1 = "/figures/meter.png?colour=C1&w=400&h=300"
STARTED = "figserve_renders_started_total"


async def get_metrics(base: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{base}/metrics")).text


@pytest.fixture
def meter(tmp_path: Path) -> MeterFolder:
    return MeterFolder(tmp_path)


async def test_a_change_is_drawn_once_then_told_to_every_viewer(meter: MeterFolder) -> None:
    server = meter.server().start()
    try:
        base = server.url
        urls = [stream_url(base, *([PLAIN, C1] if i % 2 else [PLAIN])) for i in range(20)]
        streams = await asyncio.gather(*(EventStream(u).__aenter__() for u in urls))
        try:
            assert {s.status for s in streams} == {200}
            headers = streams[0].response_headers
            assert headers["content-type"].startswith("text/event-stream")
            assert headers["x-accel-buffering"] == "no" and headers["cache-control"] == "no-store"
            # Each viewer learns the current pins (the first check of a pair takes a moment).
            for i, s in enumerate(streams):
                await s.wait_for(lambda s=s, i=i: len(s.pins()) == 1 + i % 2, "first pins")
            before = {i: s.pins() for i, s in enumerate(streams)}
            renders = metric(await get_metrics(base), STARTED, figure="meter")
            meter.set(55)
            t0 = time.monotonic()
            for i, s in enumerate(streams):
                await s.wait_for(
                    lambda s=s, i=i: all(s.pins()[k] != p for k, p in before[i].items()),
                    "the new pins",
                )
            told = max(s.events[-1].at for s in streams) - t0
            text = await get_metrics(base)
            # Two images are shown (two colours): two renders, for twenty viewers.
            assert metric(text, STARTED, figure="meter") == renders + 2
            assert metric(text, "figserve_live_renders_ahead_total", figure="meter") >= 2
            assert metric(text, "figserve_live_streams") == 20
            assert told < 10, told
            # The viewers' requests for the new images find them drawn.
            pins = streams[1].pins()
            async with httpx.AsyncClient() as client:
                urls = [f"{base}{PLAIN}&_v={p}" for p in pins.values()][:1] + [
                    f"{base}{C1}&_v={p}" for p in pins.values()
                ][1:]
                answers = await asyncio.gather(*(client.get(u) for u in urls * 10))
            assert {r.status_code for r in answers} == {200}
            assert {r.headers["x-render-cache"] for r in answers} == {"hit"}
            assert {r.headers["cache-control"] for r in answers} == {
                "public, max-age=31536000, immutable"
            }
            after = metric(await get_metrics(base), STARTED, figure="meter")
            assert after == renders + 2
        finally:
            for s in streams:
                await s.__aexit__()
    finally:
        server.stop()


async def test_limits_per_client_and_per_worker_answer_429_and_503(meter: MeterFolder) -> None:
    server = meter.server(
        FIGSERVE_LIVE_MAX_STREAMS="4",
        FIGSERVE_LIVE_MAX_CLIENT_STREAMS="2",
        FIGSERVE_TRUSTED_PROXIES="127.0.0.1",
    ).start()
    url = stream_url(server.url, PLAIN)

    def client(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    try:
        a1 = await EventStream(url, client("10.0.0.1")).__aenter__()
        # The right-most address is the one the proxy saw; what the client wrote before it
        # proves nothing.
        a2 = await EventStream(url, client("192.0.2.7, 10.0.0.1")).__aenter__()
        a3 = await EventStream(url, client("10.0.0.1")).__aenter__()
        assert (a1.status, a2.status, a3.status) == (200, 200, 429)
        assert a3.response_headers["content-type"] == "application/problem+json"
        assert int(a3.response_headers["retry-after"]) > 0
        b = [await EventStream(url, client("10.0.0.2")).__aenter__() for _ in range(2)]
        assert [s.status for s in b] == [200, 200]
        c = await EventStream(url, client("10.0.0.3")).__aenter__()
        assert c.status == 503 and int(c.response_headers["retry-after"]) > 0
        text = await get_metrics(server.url)
        assert metric(text, "figserve_live_streams_refused_total", reason="client") == 1
        assert metric(text, "figserve_live_streams_refused_total", reason="busy") == 1
        # A viewer that leaves frees its slot.
        await a1.__aexit__()

        async def admitted() -> bool:
            s = await EventStream(url, client("10.0.0.3")).__aenter__()
            await s.__aexit__()
            return s.status == 200

        deadline = time.monotonic() + 10
        while not await admitted():
            assert time.monotonic() < deadline, "the slot of a viewer that left stays taken"
            await asyncio.sleep(0.05)
        for s in (a2, *b):
            await s.__aexit__()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "give the images to follow"),
        ("f=/figures/meter.png&f=/figures/meter.png&" + "&".join(["f=/x"] * 70), "at most 64"),
        ("f=https://elsewhere.example/figures/meter.png", "the path of an image URL"),
        ("f=/figures/meter.png%3Fcolour%3Dred", "colour"),
        ("f=/figures/nosuch.png", "no figure 'nosuch'"),
        ("f=/figures/meter.gif", "no format 'gif'"),
        ("f=/figures/normal.png", "without a seed"),
        ("f=/figures/meter.png&other=1", "unknown parameter"),
        ("f=/figures/meter.png%3Fw%3D5000", "w: "),
    ],
)
async def test_a_stream_of_nothing_valid_is_a_400_naming_why(
    query: str, message: str, live_meter_server
) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{live_meter_server.url}/live/stream?{query}")
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert message in r.text


@pytest.fixture(scope="module")
def live_meter_server(tmp_path_factory):
    folder = MeterFolder(tmp_path_factory.mktemp("meter"))
    server = folder.server().start()
    yield server
    server.stop()


async def test_head_answers_what_get_would_without_a_stream(live_meter_server) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.head(stream_url(live_meter_server.url, PLAIN), timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        bad = await client.head(f"{live_meter_server.url}/live/stream?f=/nothing", timeout=10)
        assert bad.status_code == 400
        text = (await client.get(f"{live_meter_server.url}/metrics")).text
    assert metric(text, "figserve_live_streams") == 0


async def test_invalid_images_are_named_and_the_valid_ones_followed(live_meter_server) -> None:
    url = stream_url(live_meter_server.url, PLAIN, "/figures/nosuch.png", "/figures/meter.png?n=x")
    async with EventStream(url) as s:
        assert s.status == 200
        await s.wait_for(lambda: any(e.event == "invalid" for e in s.events), "the invalid ones")
        errors = next(e for e in s.events if e.event == "invalid").json()["errors"]
        assert [e["param"] for e in errors] == ["f[1]", "f[2]"]
        await s.wait_for(lambda: len(s.pins()) == 1, "the pin of the valid one")


async def test_a_stop_ends_every_stream_at_once(meter: MeterFolder) -> None:
    server = meter.server().start()
    streams = [await EventStream(stream_url(server.url, PLAIN)).__aenter__() for _ in range(5)]
    try:
        for s in streams:
            await s.wait_for(lambda s=s: s.pins(), "the first pin")
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # to the master, as systemd or Ctrl-C would
        for s in streams:
            await asyncio.wait_for(s.ended.wait(), 5)
        ended = time.monotonic() - t0
        assert all(s.events[-1].event == "bye" for s in streams)
        code = await asyncio.to_thread(server.proc.wait, 30)
        stopped = time.monotonic() - t0
    finally:
        for s in streams:
            await s.__aexit__()
        server.stop()
    assert code == 0
    # Not the 15 s of graceful_timeout that requests still running would hold.
    assert ended < 2, ended
    assert stopped < 8, stopped
    assert "live streams closing for the stop streams=5" in server.output
