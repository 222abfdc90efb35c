"""``If-None-Match: *`` (RFC 9110, 13.1.2): the condition fails when the target has any current
representation, so a GET answers 304, whatever the representation's tag (or lack of one)."""

from __future__ import annotations

import pytest
from quart import Quart

from tests.web.test_transfer import ONLY_ON_304, _sent_headers

STAR = {"If-None-Match": "*"}


@pytest.mark.parametrize(
    ("url", "cache_control"),
    [
        ("/figures/histogram.png", "no-store"),  # unseeded: no ETag, a new sample each time
        ("/figures/histogram.svg?bins=3", "no-store"),
        ("/fig/5_3", "no-store"),
        ("/figures/histogram.png?seed=3", "no-cache"),  # revalidated: its data may change
        ("/figures/waves.webp", "no-cache"),
    ],
)
async def test_star_on_any_valid_image_is_304_without_a_render(
    app: Quart, url: str, cache_control: str
) -> None:
    renderer = app.extensions["figserve"].renderer
    before = renderer.stats.started
    resp = await app.test_client().get(url, headers=STAR)
    assert resp.status_code == 304
    assert await resp.get_data() == b""
    status, headers = await _sent_headers(app, url, STAR)
    assert status == 304 and set(headers) <= ONLY_ON_304
    assert headers["cache-control"] == cache_control
    assert ("etag" in headers) == (cache_control != "no-store")
    assert renderer.stats.started == before


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/figures/histogram.png?bins=0", 400),
        ("/figures/histogram.gif", 404),
        ("/figures/nosuch.png", 404),
        ("/fig/x_1", 400),
    ],
)
async def test_star_on_what_does_not_exist_is_its_error(app: Quart, url: str, status: int) -> None:
    resp = await app.test_client().get(url, headers=STAR)
    assert resp.status_code == status


@pytest.mark.parametrize("url", ["/", "/gallery/waves", "/normal/5_3", "/docs", "/api/figures"])
async def test_star_on_a_page_is_304(app: Quart, url: str) -> None:
    resp = await app.test_client().get(url, headers=STAR)
    assert resp.status_code == 304 and "ETag" in resp.headers


async def test_a_tag_list_without_star_still_needs_the_right_tag(app: Quart) -> None:
    client = app.test_client()
    for header in ('""', '"nope"', 'W/"nope"'):
        resp = await client.get("/figures/histogram.png?bins=3", headers={"If-None-Match": header})
        assert resp.status_code == 200, header
