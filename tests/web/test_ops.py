"""Health, readiness and metrics routes."""

from __future__ import annotations

from quart import Quart

from figserve.app import create_app
from tests.support.prometheus import metric


async def scrape(client) -> str:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    return await resp.get_data(as_text=True)


async def test_readyz_answers_503_until_serving_starts() -> None:
    app = create_app({"warm_up": False})
    client = app.test_client()  # serving hooks not run: no render pool yet
    assert (await client.get("/healthz")).status_code == 200
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "1"


async def test_ready_once_the_render_processes_run_and_not_after_stopping() -> None:
    app = create_app({"warm_up": True})
    async with app.test_app():
        renderer = app.extensions["figserve"].renderer
        assert renderer.pool.pids()  # started, warm, before the first request
        resp = await app.test_client().get("/readyz")
        assert resp.status_code == 200
        assert await resp.get_data(as_text=True) == "ready\n"
    resp = await app.test_client().get("/readyz")
    assert resp.status_code == 503  # stopped


async def test_liveness_is_answered_before_routing_and_not_counted(app: Quart) -> None:
    client = app.test_client()
    resp = await client.get("/healthz")
    assert resp.status_code == 200 and await resp.get_data() == b"ok\n"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    head = await client.head("/healthz")
    assert head.status_code == 200 and await head.get_data() == b""
    assert (await client.post("/healthz")).status_code == 405
    text = await scrape(client)
    assert metric(text, "figserve_http_requests_total", route="/healthz", method="GET") == 0
    assert metric(text, "figserve_http_requests_total", route="unmatched", status="405") == 1


async def test_metrics_move_as_requests_are_made(app: Quart) -> None:
    client = app.test_client()
    before = await scrape(client)
    assert metric(before, "figserve_renders_started_total") == 0
    for _ in range(2):
        assert (await client.get("/figures/normal.svg?seed=11")).status_code == 200
    assert (await client.get("/figures/waves.png?w=200&h=150")).status_code == 200
    assert (await client.get("/no/such/page")).status_code == 404
    assert (await client.get("/figures/normal.png?w=1")).status_code == 400
    text = await scrape(client)
    req = "figserve_http_requests_total"
    assert metric(text, req, route="/figures/normal.<fmt>", status="200") == 2
    assert metric(text, req, route="/figures/normal.<fmt>", status="400") == 1
    assert metric(text, req, route="/figures/waves.<fmt>", status="200") == 1
    assert metric(text, req, route="unmatched", status="404") == 1
    assert metric(text, req, route="/metrics", status="200") == 1  # the first scrape
    assert metric(text, "figserve_render_cache_misses_total", figure="normal") == 1
    assert metric(text, "figserve_render_cache_hits_total", figure="normal") == 1
    assert metric(text, "figserve_renders_started_total") == 2
    assert metric(text, "figserve_renders_finished_total") == 2
    count = "figserve_render_duration_seconds_count"
    assert metric(text, count, figure="normal", format="svg") == 1
    assert metric(text, count, figure="waves", format="png") == 1
    assert metric(text, "figserve_render_duration_seconds_sum") > 0


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
