"""Live pages behind the nginx of deploy/: streams pass unbuffered over HTTP/1.1 and HTTP/2,
and per-client limits count the address nginx forwards, not one a client makes up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.support.livepage import MeterFolder
from tests.support.nginx import nginx
from tests.support.sse import EventStream, stream_url
from tests.support.waiting import until_sync
from tests.web.test_live_browser import open_page, pins, shown, wait_pins

pytestmark = pytest.mark.live
PLAIN = "/figures/meter.png?w=400&h=300"


@pytest.fixture
def behind_nginx(tmp_path: Path):
    folder = MeterFolder(tmp_path)
    server = folder.server(
        FIGSERVE_TRUSTED_PROXIES="127.0.0.1", FIGSERVE_LIVE_MAX_CLIENT_STREAMS="1"
    ).start()
    try:
        with nginx([f"127.0.0.1:{server.port}"]) as front:
            yield folder, server, front
    finally:
        server.stop()


async def test_streams_pass_through_unbuffered(behind_nginx) -> None:
    folder, _, front = behind_nginx
    async with EventStream(stream_url(front.url, PLAIN), local_address="127.0.0.2") as s:
        assert s.status == 200
        await s.wait_for(lambda: s.pins(), "the first pin")
        before = s.pins()
        folder.set(42)
        t0 = time.monotonic()
        # A message of some 100 bytes comes through at once: nothing waits to fill a buffer.
        await s.wait_for(lambda: s.pins() != before, "the new pin through nginx")
        assert time.monotonic() - t0 < 10
        # Its client is the address nginx saw, whatever it writes itself: a second stream of
        # the same machine is past its limit of one.
        async with EventStream(
            stream_url(front.url, PLAIN),
            headers={"X-Forwarded-For": "198.51.100.23"},
            local_address="127.0.0.2",
        ) as again:
            assert again.status == 429
        async with EventStream(stream_url(front.url, PLAIN), local_address="127.0.0.3") as other:
            assert other.status == 200


@pytest.mark.browser
def test_a_live_page_over_http2(behind_nginx, browser: Browser, artifacts: Path) -> None:
    folder, _, front = behind_nginx
    context = browser.new_context(ignore_https_errors=True)
    page = open_page(context, f"{front.tls_url}/pages/meter")
    until_sync(lambda: all(pins(page)) and shown(page), "pinned images", 30)
    protocols = page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.nextHopProtocol)"
    )
    assert protocols and set(protocols) == {"h2"}, protocols
    assert page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
    before = pins(page)
    folder.set(88)
    wait_pins(page, before, "the new images over HTTP/2")
    page.screenshot(path=artifacts / "live_meter_h2.png")
    context.close()
