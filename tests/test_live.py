"""A real Hypercorn server with the shipped hypercorn.toml (issue 2)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from .conftest import decode
from .test_routes import parse

pytestmark = pytest.mark.live


def page_image_urls(html: str) -> list[str]:
    urls: list[str] = []
    for img in parse(html).images:
        for url in [img["src"], *re.findall(r"(\S+) \dx", img.get("srcset", ""))]:
            if url not in urls:
                urls.append(url)
    return urls


async def test_all_images_of_a_page_load_concurrently(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        page = await http.get("/normal/5_3")
        assert page.status_code == 200
        urls = page_image_urls(page.text)  # every 1x and 2x image: 12 requests at once
        assert len(urls) >= 12
        responses = await asyncio.gather(*(http.get(u) for u in urls))
    assert [r.status_code for r in responses] == [200] * len(urls)
    for url, resp in zip(urls, responses, strict=True):
        assert resp.headers["content-type"] == "image/png"
        size = decode(resp.content).size
        assert size == ((800, 600) if "dpr=2" in url else (400, 300))


async def test_live_errors_are_4xx_not_5xx(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for path in ["/normal/abc", "/normal/5_3_1", "/fig/x_1", "/fig/5_0", "/fig/nan_1"]:
            assert (await http.get(path)).status_code == 400
        assert (await http.get("/nothing")).status_code == 404


def test_access_log_records_requests(server):
    with httpx.Client(base_url=server.url) as http:
        http.get("/healthz?probe=access-log")
    server.wait_for('"GET /healthz?probe=access-log 1.1" 200', timeout=10)
