"""Scale-out mode when Redis breaks: stopped with SIGSTOP (alive, silent), and out of memory in
the middle of a job. A real redis-server of each test's own; in process, with SAQ workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from quart import Quart

from figserve.app import create_app
from tests.jobs.conftest import WAIT, entered, gated, token_for
from tests.jobs.test_queue import client_of, config, ended, submit
from tests.support.gates import Gate
from tests.support.redis import RedisServer, redis_server
from tests.support.waiting import until

STORE_TIMEOUT = 2.0  # FIGSERVE_JOB_STORE_TIMEOUT as shipped
BOUND = STORE_TIMEOUT + 1.5  # what any job route may take while Redis is silent


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def app(redis: RedisServer, tmp_path: Path, gate: Gate) -> AsyncIterator[Quart]:
    application = create_app(
        config(redis.url, tmp_path, job_store_timeout=STORE_TIMEOUT, job_poll_interval=0.1)
    )
    try:
        async with application.test_app():
            yield application
    finally:
        redis.resume()  # a stopped Redis would hold the stop of the app's workers
        gate.open()


async def test_a_stopped_redis_answers_503_in_bounded_time_and_requests_do_not_pile_up(
    app: Quart, redis: RedisServer
) -> None:
    client = client_of(app, token_for(app))
    job_id = await submit(client, [{"figure": "waves"}])
    assert (await ended(client, job_id))["state"] == "done"
    redis.pause()  # SIGSTOP: connections open, nothing answers
    try:
        routes = [
            ("POST", "/jobs"),
            ("GET", "/jobs"),
            ("GET", f"/jobs/{job_id}"),
            ("GET", f"/jobs/{job_id}/result"),
            ("DELETE", f"/jobs/{job_id}"),
        ]
        body = {"items": [{"figure": "waves"}], "output": "zip"}
        for method, path in routes:
            t0 = time.monotonic()
            resp = await client.open(path, method=method, json=body if method == "POST" else None)
            assert resp.status_code == 503, (method, path, await resp.get_data(as_text=True))
            assert int(resp.headers["Retry-After"]) >= 1
            assert time.monotonic() - t0 < BOUND, (method, path)
        # Many progress pages polling at once: each answered within the bound.
        t0 = time.monotonic()
        polls = await asyncio.gather(*(client.get(f"/jobs/{job_id}") for _ in range(40)))
        assert {p.status_code for p in polls} == {503}
        assert time.monotonic() - t0 < BOUND
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "jobs:" in await ready.get_data(as_text=True)
    finally:
        redis.resume()
    service = app.extensions["figserve"].jobs
    await until(lambda: service.ready, "jobs to be ready again", WAIT)
    assert (await client.get(f"/jobs/{job_id}")).status_code == 200
    later = await submit(client, [{"figure": "waves"}])
    assert (await ended(client, later))["state"] == "done"


async def test_redis_out_of_memory_mid_job_fails_it_naming_the_cause(
    app: Quart, redis: RedisServer, gate: Gate
) -> None:
    client = client_of(app, token_for(app))
    job_id = await submit(client, [gated(gate, "a"), gated(gate, "b")])
    gate.let_through("a")
    await entered(gate, 2)
    await until(
        lambda: redis.command("SCARD", f"fs:job:{job_id}:done").strip() == b":1",
        "item 1 to be kept",
        WAIT,
    )
    redis.command("CONFIG", "SET", "maxmemory", "1")  # full: every write that adds is refused
    try:
        gate.let_through("b")
        job = await ended(client, job_id)
    finally:
        redis.command("CONFIG", "SET", "maxmemory", "0")
    assert job["state"] == "failed"
    assert "Redis is out of memory" in job["error"] and "maxmemory" in job["error"]
    later = await submit(client, [{"figure": "waves"}])
    assert (await ended(client, later))["state"] == "done"
