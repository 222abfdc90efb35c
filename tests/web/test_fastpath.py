"""The fast path of cached images: every answer it gives is the one the slow path (Quart) gives
for the same request, headers and bytes, and it counts the same metrics; anything unusual goes
the slow path."""

from __future__ import annotations

import http.client
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart

from figserve.app import create_app
from figserve.web.fastpath import FastPath
from tests.support.live import LiveServer
from tests.support.prometheus import metric

FORMATS = ["png", "webp", "jpeg", "pdf"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
async def app() -> AsyncIterator[Quart]:
    application = create_app({"warm_up": False, "render_processes": 1, "job_threads": 0})
    async with application.test_app():
        yield application


def fast(app: Quart) -> FastPath:
    path = app.extensions["figserve"].fast
    assert path is not None
    return path


async def answer(app: Quart, url: str, headers: dict[str, str] | None = None, **kw: Any):
    resp = await app.test_client().get(url, headers=headers or {}, **kw)
    return (
        resp.status_code,
        sorted((k.lower(), v) for k, v in resp.headers.items()),
        (await resp.get_data()),
    )


async def fast_and_slow(app: Quart, url: str, headers: dict[str, str] | None = None):
    """The answer with the target in the table, and the answer of the slow path."""
    path = fast(app)
    await app.test_client().get(url)  # rendered, or a hit: either way the target is offered
    before = path.stats.hits + path.stats.not_modified
    quick = await answer(app, url, headers)
    took = path.stats.hits + path.stats.not_modified - before
    path.clear()
    slow = await answer(app, url, headers)
    assert path.stats.hits + path.stats.not_modified == before + took
    return quick, slow, took


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_cached_image_is_answered_below_quart_exactly_as_quart_answers(
    app: Quart, fmt: str
) -> None:
    url = f"/figures/normal.{fmt}?seed=3&w=200&h=150"
    quick, slow, took = await fast_and_slow(app, url)
    assert took == 1
    assert quick == slow
    status, headers, body = quick
    assert status == 200 and dict(headers)["x-render-cache"] == "hit" and len(body) > 100
    etag = dict(headers)["etag"]
    for condition in (etag, f"W/{etag}", "*", f'"other", {etag}'):
        quick, slow, took = await fast_and_slow(app, url, {"If-None-Match": condition})
        assert took == 1 and quick == slow and quick[0] == 304 and quick[2] == b""
    quick, slow, took = await fast_and_slow(app, url, {"If-None-Match": '"other"'})
    assert took == 1 and quick == slow and quick[0] == 200


async def test_the_seed_route_and_its_metrics(app: Quart) -> None:
    client = app.test_client()
    url = "/fig/5_3?seed=9&w=120&h=90"
    assert (await client.get(url)).headers["X-Render-Cache"] == "miss"
    for _ in range(3):
        assert (await client.get(url)).headers["X-Render-Cache"] == "hit"
    etag = (await client.get(url)).headers["ETag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert fast(app).stats.hits == 4 and fast(app).stats.not_modified == 1
    text = await (await client.get("/metrics")).get_data(as_text=True)
    route = "/fig/<mean_var>"
    assert metric(text, "figserve_http_requests_total", route=route, status="200") == 5
    assert metric(text, "figserve_http_requests_total", route=route, status="304") == 1
    assert metric(text, "figserve_render_cache_hits_total", figure="normal", format="png") == 4
    assert app.extensions["figserve"].renderer.stats.cache_hits == 4


async def test_svg_goes_the_slow_path_its_coding_depends_on_the_client(app: Quart) -> None:
    client = app.test_client()
    url = "/figures/normal.svg?seed=3"
    for _ in range(3):
        resp = await client.get(url, headers={"Accept-Encoding": "gzip"})
        assert resp.status_code == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert fast(app).stats.hits == 0 and len(fast(app)) == 0


@pytest.mark.parametrize(
    "request_kw",
    [
        {"headers": {"Range": "bytes=0-9"}},
        {"headers": {"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"}},
        {"headers": {"If-Match": '"x"'}},
        {"headers": {"If-None-Match": "not-a-tag"}},
        {"data": b"a body", "headers": {"Content-Length": "6"}},
        {"headers": {"Transfer-Encoding": "chunked"}},
    ],
)
async def test_unusual_requests_go_the_slow_path(app: Quart, request_kw: dict) -> None:
    client = app.test_client()
    url = "/figures/normal.png?seed=4"
    await client.get(url)
    assert len(fast(app)) == 1
    resp = await client.get(url, **request_kw)
    assert resp.status_code == 200 and resp.headers["X-Render-Cache"] == "hit"
    assert fast(app).stats.hits == 0
    head = await client.head(url)
    assert head.status_code == 200 and fast(app).stats.hits == 0


async def test_stale_forgotten_and_evicted_entries_go_the_slow_path(app: Quart) -> None:
    client = app.test_client()
    state = app.extensions["figserve"]
    path = fast(app)
    url = "/figures/normal.png?seed=5"
    await client.get(url)
    await client.get(url)
    assert path.stats.hits == 1
    state.renderer.forget("normal")  # its data changed
    assert (await client.get(url)).headers["X-Render-Cache"] == "hit"
    assert path.stats.hits == 1  # answered by Quart, which offered it again
    await client.get(url)
    assert path.stats.hits == 2
    (entry,) = path._table.values()
    entry.fresh_until = 0.0  # its data version is due for a check
    await client.get(url)
    assert path.stats.hits == 2
    state.renderer._cache.clear()  # the bytes left the render cache
    resp = await client.get(url)
    assert resp.headers["X-Render-Cache"] == "miss" and path.stats.hits == 2


async def test_the_table_is_bounded() -> None:
    application = create_app({"warm_up": False, "render_processes": 1, "fast_path_entries": 3})
    async with application.test_app():
        client = application.test_client()
        for seed in range(5):
            await client.get(f"/figures/normal.png?seed={seed}&w=60&h=60")
        assert len(fast(application)) == 3
        await client.get("/figures/normal.png?seed=0&w=60&h=60")  # dropped first
        await client.get("/figures/normal.png?seed=4&w=60&h=60")
        assert fast(application).stats.hits == 1


tags = st.sampled_from(["TAG", "W/TAG", '"other"', "*", '"a", TAG', "TAG-gzip", "", "junk"])


@FAST
@given(
    condition=st.none() | tags,
    accept=st.sampled_from([None, "image/*", "application/json", "*/*"]),
    coding=st.sampled_from([None, "gzip", "br", "identity"]),
    fmt=st.sampled_from(FORMATS),
)
async def test_any_request_gets_the_answer_the_slow_path_gives(
    condition: str | None, accept: str | None, coding: str | None, fmt: str
) -> None:
    application = create_app({"warm_up": False, "render_processes": 1})
    async with application.test_app():
        url = f"/figures/waves.{fmt}?w=80&h=60"
        first = await application.test_client().get(url)
        etag = first.headers["ETag"]
        headers = {}
        if condition is not None:
            headers["If-None-Match"] = condition.replace("TAG-gzip", etag[:-1] + '-gzip"').replace(
                "TAG", etag
            )
        if accept is not None:
            headers["Accept"] = accept
        if coding is not None:
            headers["Accept-Encoding"] = coding
        quick, slow, _ = await fast_and_slow(application, url, headers)
        assert quick == slow


@pytest.mark.live
def test_a_live_server_answers_hits_with_the_same_headers_and_logs_them(
    web_server: LiveServer,
) -> None:
    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=30)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        headers.pop("date", None)
        return resp.status, headers, body

    path = "/figures/heatmap.png?seed=17&w=90&h=70"
    first = get(path)
    second, third = get(path), get(path)
    assert first[1]["x-render-cache"] == "miss"
    assert second == third and second[2] == first[2]
    assert {**first[1], "x-render-cache": "hit"} == second[1]
    web_server.wait_for(f"GET {path.split('?')[0]}", count=3)  # the access log has all three
