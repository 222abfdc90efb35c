"""Jobs in scale-out mode, in process against a real redis-server: the routes over Redis and
SAQ, retries of failed items, limits and privacy, and the watch round that finishes a sweep
whose worker died."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart
from redis.asyncio import Redis
from saq import Status
from saq.queue.redis import RedisQueue

from figserve.app import create_app
from figserve.jobs.queue import ITEMS_QUEUE, JOBS_QUEUE
from figserve.web.owner import COOKIE
from tests.jobs.conftest import token_for
from tests.support.gates import registry_with_test_figures

WAIT = 60.0


def config(redis_url: str, tmp_path: Path, **overrides: object) -> dict:
    return {
        "warm_up": False,
        "redis_url": redis_url,
        "jobs_dir": str(tmp_path / "jobs"),
        "registry": registry_with_test_figures(),
        "render_processes": 1,
        "job_threads": 1,
        "job_stale_after": 2,
        "job_poll_interval": 0.2,
        "job_max_attempts": 2,
        **overrides,
    }


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[Quart]:
    application = create_app(config(redis_url, tmp_path))
    async with application.test_app():
        yield application


def client_of(app: Quart, token: str | None = None):
    client = app.test_client()
    if token:
        client.set_cookie("localhost", COOKIE, token, path="/jobs")
    return client


async def ended(client, job_id: str, timeout: float = WAIT) -> dict:
    """The job once it has ended, checked often within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        job = await (await client.get(f"/jobs/{job_id}")).get_json()
        if job["state"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"the job did not end: {job}"
        await asyncio.sleep(0.02)


async def submit(client, items: list[dict], output: str = "zip") -> str:
    resp = await client.post("/jobs", json={"items": items, "output": output})
    assert resp.status_code == 202, await resp.get_data(as_text=True)
    return (await resp.get_json())["id"]


async def saq_record(redis_url: str, queue: str, key: str):
    client = Redis.from_url(redis_url)
    try:
        return await RedisQueue(client, name=queue).job(key)
    finally:
        await client.aclose()


async def test_a_zip_job_runs_on_the_queue(app: Quart) -> None:
    client = client_of(app, token_for(app))
    items = [
        {"figure": "waves", "format": "svg"},
        {"figure": "histogram", "params": {"seed": 3}, "format": "png", "w": 120, "h": 90},
    ]
    job_id = await submit(client, items)
    job = await ended(client, job_id)
    assert job["state"] == "done" and job["done"] == 2, job
    resp = await client.get(f"/jobs/{job_id}/result")
    data = await resp.get_data()
    assert resp.status_code == 200 and resp.headers["Content-Length"] == str(len(data))
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["1-waves.svg", "2-histogram.png"]


async def test_an_item_whose_process_dies_is_tried_again_then_fails_the_job(
    app: Quart, redis_url: str
) -> None:
    client = client_of(app, token_for(app))
    job_id = await submit(client, [{"figure": "crash", "format": "png"}])
    job = await ended(client, job_id)
    assert job["state"] == "failed"
    assert job["error"] == "item 1: the render process died during the render"
    task = await saq_record(redis_url, ITEMS_QUEUE, f"item:{job_id}:0")
    assert task is not None and task.attempts == 2  # FIGSERVE_JOB_MAX_ATTEMPTS


async def test_a_figure_that_raises_fails_the_job_at_once(app: Quart, redis_url: str) -> None:
    client = client_of(app, token_for(app))
    job_id = await submit(client, [{"figure": "waves"}, {"figure": "broken", "format": "png"}])
    job = await ended(client, job_id)
    assert job["state"] == "failed"
    assert job["error"] == "item 2 could not be rendered; the error has been logged"
    assert "secret" not in job["error"]
    task = await saq_record(redis_url, ITEMS_QUEUE, f"item:{job_id}:1")
    assert task is not None and task.attempts == 1  # a bug is not retried


async def test_limits_and_privacy_hold_over_redis(redis_url: str, tmp_path: Path) -> None:
    # No job workers: jobs stay queued, so the limits can be seen at work.
    application = create_app(
        config(redis_url, tmp_path, job_threads=0, job_max_active=3, job_max_client_active=2)
    )
    async with application.test_app():
        mine, theirs = token_for(application), token_for(application)
        me, them = client_of(application, mine), client_of(application, theirs)
        stranger = client_of(application)
        first = await submit(me, [{"figure": "waves"}])
        await submit(me, [{"figure": "waves"}])
        refused = await me.post("/jobs", json={"items": [{"figure": "waves"}]})
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        await submit(them, [{"figure": "waves"}])
        full = await stranger.post("/jobs", json={"items": [{"figure": "waves"}]})
        assert full.status_code == 503
        for other in (them, stranger):
            assert (await other.get(f"/jobs/{first}")).status_code == 404
            assert (await other.get(f"/jobs/{first}/result")).status_code == 404
            assert (await other.delete(f"/jobs/{first}")).status_code == 404
        listed = await (await me.get("/jobs", headers={"Accept": "application/json"})).get_json()
        assert len(listed["jobs"]) == 2
        cancelled = await me.delete(f"/jobs/{first}")
        assert (await cancelled.get_json())["state"] == "cancelled"
        assert (await me.get(f"/jobs/{first}/result")).status_code == 409
        assert (await me.delete(f"/jobs/{first}")).status_code == 204
        assert (await me.get(f"/jobs/{first}")).status_code == 404
        # Its place is free again.
        await submit(me, [{"figure": "waves"}])


async def test_a_task_left_aborting_by_a_dead_sweeper_runs_again(
    redis_url: str, tmp_path: Path
) -> None:
    submitter = create_app(config(redis_url, tmp_path / "a", job_threads=0))
    async with submitter.test_app():
        client = client_of(submitter, token_for(submitter))
        job_id = await submit(client, [{"figure": "waves"}], "pdf")
        # A worker took the plan, a sweep aborted it (SAQ's race), and the sweeping worker
        # died before it queued the plan again: the task is "aborting" and in no list.
        redis = Redis.from_url(redis_url)
        queue = RedisQueue(redis, name=JOBS_QUEUE)
        task = await queue.dequeue(timeout=1)
        assert task is not None and task.key == f"plan:{job_id}"
        await queue.abort(task, "swept")
        task.touched = task.started = task.queued = 1
        await redis.set(task.id, queue.serialize(task))
        stuck = await queue.job(task.key)
        assert stuck is not None and stuck.status is Status.ABORTING
        await redis.aclose()
        worker = create_app(config(redis_url, tmp_path / "b"))
        async with worker.test_app():
            job = await ended(client, job_id)
    assert job["state"] == "done", job
