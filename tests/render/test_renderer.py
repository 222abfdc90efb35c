"""The renderer in a serving app: admission limit, deadlines, renders that run away or die,
cancellation of renders nobody waits for, single flight, the cache. Renders that must stay
busy block on a gate the test opens."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from quart import Quart

from figserve.app import create_app
from figserve.config import Settings
from figserve.render import ImageOptions, Renderer, RenderUnavailable, job_for
from tests.support.gates import Gate, registry_with_test_figures
from tests.support.procs import alive
from tests.support.prometheus import metric
from tests.support.waiting import until


@asynccontextmanager
async def serving(gate: Gate, **settings: object) -> AsyncIterator[Quart]:
    """The app with the test figures, one interactive render process, serving hooks run."""
    config = {
        "warm_up": False,
        "registry": registry_with_test_figures(),
        "render_processes": 1,
        "render_queue_limit": 3,
        "render_timeout": 30.0,
        **settings,
    }
    application = create_app(config)
    async with application.test_app():
        try:
            yield application
        finally:
            gate.open()


@pytest.fixture
async def app(gate: Gate) -> AsyncIterator[Quart]:
    async with serving(gate) as application:
        yield application


def renderer(app: Quart) -> Renderer:
    return app.extensions["figserve"].renderer


async def scrape(client) -> str:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    return await resp.get_data(as_text=True)


def problem(body: bytes) -> dict:
    return json.loads(body)


async def test_past_the_admission_limit_renders_are_shed_with_503(app: Quart, gate: Gate) -> None:
    client = app.test_client()
    r = renderer(app)
    cached = await client.get("/figures/normal.png?seed=7")  # fills the cache before the flood
    assert cached.status_code == 200
    busy = [
        asyncio.create_task(client.get(f"/figures/gated.png?{gate.query(f't{i}')}"))
        for i in range(3)
    ]
    await until(lambda: r.pending == 3 and len(gate.started()) == 1, "3 admitted renders")

    as_image = await client.get(
        f"/figures/gated.png?{gate.query('x')}&w=200&h=100", headers={"Accept": "image/*"}
    )
    assert as_image.status_code == 503
    assert as_image.headers["Retry-After"] == "1"
    assert as_image.mimetype == "image/svg+xml"
    svg = await as_image.get_data(as_text=True)
    assert "busy" in svg and 'width="200"' in svg

    as_api = await client.get(
        f"/figures/gated.png?{gate.query('y')}", headers={"Accept": "application/json"}
    )
    assert as_api.status_code == 503
    assert as_api.headers["Retry-After"] == "1"
    assert as_api.mimetype == "application/problem+json"
    assert problem(await as_api.get_data())["title"] == "Too many renders"

    posted = await client.post("/api/render", json={"figure": "gated", "params": gate.params("z")})
    assert posted.status_code == 503 and posted.headers["Retry-After"] == "1"

    # Cached images, pages, health and metrics do not wait behind renders.
    hit = await client.get("/figures/normal.png?seed=7")
    assert hit.status_code == 200 and hit.headers["X-Render-Cache"] == "hit"
    for path in ("/healthz", "/readyz", "/"):
        assert (await client.get(path)).status_code == 200, path
    text = await scrape(client)
    assert metric(text, "figserve_render_queue_depth") == 2
    assert metric(text, "figserve_renders_in_flight") == 1
    assert metric(text, "figserve_renders_rejected_total") == 3
    assert r.stats.rejected == 3

    gate.open()
    for resp in await asyncio.gather(*busy):
        assert resp.status_code == 200
    assert r.pending == 0 and r.in_flight == 0 and r.queued == 0
    text = await scrape(client)
    assert metric(text, "figserve_render_queue_depth") == 0
    assert metric(text, "figserve_renders_in_flight") == 0


async def test_a_request_past_its_deadline_answers_503_and_the_result_is_cached_late(
    gate: Gate,
) -> None:
    # The request stops waiting at 1 s; the render process may go on until its own deadline.
    async with serving(gate, render_timeout=1.0, render_processes=2) as app:
        client = app.test_client()
        r = renderer(app)
        r.pool.settings = dataclasses.replace(r.pool.settings, deadline=30.0)
        try:
            resp = await client.get(f"/figures/gated.png?{gate.query('slow')}")
            assert resp.status_code == 503
            assert resp.headers["Retry-After"] == "2"
            body = problem(await resp.get_data())
            assert body["title"] == "Render timed out"
            assert "longer than 1 s" in body["detail"]  # the configured deadline
            assert r.stats.timeouts == 1
            # The worker stays healthy while the late render is still running.
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/figures/normal.png?w=60&h=60")).status_code == 200
        finally:
            gate.open()
        await until(lambda: r.stats.finished == 2, "the late render to finish")
        again = await client.get(f"/figures/gated.png?{gate.query('slow')}")
        assert again.status_code == 200
        assert again.headers["X-Render-Cache"] == "hit"  # deterministic: the late result is kept
        assert gate.started() == ["slow"]
        assert metric(await scrape(client), "figserve_render_timeouts_total") == 1


@pytest.mark.parametrize(
    ("figure", "status", "title", "retry"),
    [
        ("spin", 422, "Figure too complex", None),
        ("stall", 503, "Render timed out", "2"),
        ("crash", 503, "Render process failed", "1"),
        ("hog", 422, "Figure too complex", None),
    ],
)
async def test_a_render_that_runs_away_or_dies_costs_one_response(
    gate: Gate, figure: str, status: int, title: str, retry: str | None
) -> None:
    timeout = 3.0 if figure == "spin" else 1.0  # a drawing render is told by its CPU time
    async with serving(gate, render_timeout=timeout, render_memory_mb=256) as app:
        client = app.test_client()
        r = renderer(app)
        before = r.pool.pids()
        resp = await client.get(f"/figures/{figure}.png", headers={"Accept": "application/json"})
        assert resp.status_code == status
        body = problem(await resp.get_data())
        assert body["title"] == title
        assert resp.headers.get("Retry-After") == retry
        # The rest of the site does not notice; a fresh process serves the next render.
        assert (await client.get("/readyz")).status_code == 200
        ok = await client.get("/figures/normal.png?w=60&h=60")
        assert ok.status_code == 200
        assert r.pool.pids() != before
        text = await scrape(client)
        if figure in {"spin", "stall"}:
            assert metric(text, "figserve_render_processes_killed_total", figure=figure) == 1
        if figure == "crash":
            assert metric(text, "figserve_render_processes_crashed_total", figure=figure) == 1


async def test_renders_of_clients_that_left_before_their_turn_never_run(gate: Gate) -> None:
    async with serving(gate, render_queue_limit=10) as app:
        await _leave_before_their_turn(app, gate)


async def _leave_before_their_turn(app: Quart, gate: Gate) -> None:
    client = app.test_client()
    r = renderer(app)
    first = asyncio.create_task(client.get(f"/figures/gated.png?{gate.query('first')}"))
    await until(lambda: gate.started() == ["first"], "the first render to start")
    async with AsyncExitStack() as stack:
        connections = []
        for i in range(4):
            path = f"/figures/gated.png?{gate.query(f'q{i}')}"
            conn = await stack.enter_async_context(client.request(path))
            await conn.send_complete()
            connections.append(conn)
        await until(lambda: r.pending == 5, "4 queued renders")
        for conn in connections:
            await conn.disconnect()  # what Hypercorn sends when the browser goes away
    await until(lambda: r.stats.cancelled == 4, "4 cancellations")
    assert r.pending == 1
    gate.open()
    assert (await first).status_code == 200
    assert gate.started() == ["first"]  # the 4 queued renders were never executed
    assert r.stats.started == 1
    text = await scrape(client)
    assert metric(text, "figserve_renders_cancelled_total") == 4
    assert metric(text, "figserve_renders_started_total", figure="gated") == 1
    assert metric(text, "figserve_render_queue_depth") == 0


async def test_a_shared_render_keeps_running_while_one_of_its_waiters_stays(
    app: Quart, gate: Gate
) -> None:
    client = app.test_client()
    r = renderer(app)
    first = asyncio.create_task(client.get(f"/figures/gated.png?{gate.query('first')}"))
    await until(lambda: gate.started() == ["first"], "the first render to start")
    async with client.request(f"/figures/gated.png?{gate.query('shared')}") as leaving:
        await leaving.send_complete()
        await until(lambda: r.pending == 2, "the shared render to be queued")
        staying = asyncio.create_task(client.get(f"/figures/gated.png?{gate.query('shared')}"))
        # Counted in the same step that joins the flight: 3 misses = both waiters joined.
        await until(lambda: r.stats.cache_misses == 3, "the second waiter to join")
        await leaving.disconnect()
    assert r.stats.cancelled == 0
    gate.open()
    assert (await first).status_code == 200
    resp = await staying
    assert resp.status_code == 200 and resp.headers["X-Render-Cache"] == "shared"
    assert sorted(gate.started()) == ["first", "shared"]


async def test_closing_answers_running_and_queued_waiters_at_once(gate: Gate) -> None:
    settings = Settings(render_processes=1, render_queue_limit=5, render_timeout=30)
    spec = registry_with_test_figures().get("gated")
    r = Renderer(settings, preload=["tests.support.gates"])
    await r.start()

    def job(tag: str):
        return job_for(spec, spec.params(**gate.params(tag)), ImageOptions(), 10**6)

    running = asyncio.create_task(r.render(job("a")))
    await until(lambda: gate.started() == ["a"], "the first render to start")
    queued = asyncio.create_task(r.render(job("b")))
    await until(lambda: r.pending == 2, "a queued render")
    await r.close()  # does not wait for the gate: the render process is killed
    for task in (running, queued):
        with pytest.raises(RenderUnavailable, match="stopping"):
            await task
    assert gate.started() == ["a"]
    assert not any(alive(pid) for pid in r.pool.pids())


async def test_a_result_larger_than_the_cache_is_served_not_cached() -> None:
    app = create_app({"warm_up": False, "cache_bytes": 100})
    async with app.test_app():
        client = app.test_client()
        for _ in range(2):
            resp = await client.get("/figures/normal.png?seed=3")
            assert resp.status_code == 200
            assert resp.headers["X-Render-Cache"] == "miss"


async def test_shed_renders_log_as_warnings(app: Quart, gate: Gate, figserve_logs) -> None:
    client = app.test_client()
    r = renderer(app)
    busy = [
        asyncio.create_task(client.get(f"/figures/gated.png?{gate.query(f't{i}')}"))
        for i in range(3)
    ]
    await until(lambda: r.pending == 3, "a full queue")
    assert (await client.get(f"/figures/gated.png?{gate.query('x')}")).status_code == 503
    gate.open()
    await asyncio.gather(*busy)
    shed = [r for r in figserve_logs.records if "status=503" in r.getMessage()]
    assert len(shed) == 1 and shed[0].levelno == logging.WARNING
