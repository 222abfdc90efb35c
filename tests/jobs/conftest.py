"""Jobs through the API in process: an app whose ``gated`` items wait in their render process
until the test lets their tag through, so progress and cancellation are observed at exact
points, not by timing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from figserve.app import create_app
from figserve.jobs import JobRecord, JobService, JobState
from figserve.jobs.local import LocalRunner
from figserve.jobs.local_store import LocalJobStore
from figserve.web.owner import COOKIE, new_token, token_hash
from tests.support.gates import Gate, registry_with_test_figures
from tests.support.waiting import until

WAIT = 60  # seconds: a deadline for conditions, never a pause


FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}


def gated(gate: Gate, tag: str) -> dict:
    return {"figure": "gated", "params": gate.params(tag)}


async def entered(gate: Gate, count: int) -> None:
    await until(lambda: len(gate.started()) >= count, f"{count} items to begin", WAIT)


@pytest.fixture
def app_config(jobs_dir: Path) -> dict:
    return {
        "warm_up": False,
        "jobs_dir": str(jobs_dir),
        "registry": registry_with_test_figures(),
        "render_processes": 1,
    }


@pytest.fixture
async def app(app_config: dict, gate: Gate) -> AsyncIterator[Quart]:
    application = create_app(app_config)
    try:
        async with application.test_app():
            yield application
    finally:
        gate.open()


def runner_of(app: Quart) -> JobService:
    service = app.extensions["figserve"].jobs
    assert service is not None
    return service


def lane_of(app: Quart) -> LocalRunner:
    lane = runner_of(app).lane
    assert isinstance(lane, LocalRunner)
    return lane


def store_of(app: Quart) -> LocalJobStore:
    store = runner_of(app).store
    assert isinstance(store, LocalJobStore)
    return store


def token_for(app: Quart) -> str:
    """An owner token this app issued (signed with its key)."""
    return new_token(runner_of(app).owner_key)


async def start(client, items: list[dict], output: str = "pdf", **extra: str) -> dict:
    resp = await client.post("/jobs", json={"items": items, "output": output, **extra})
    assert resp.status_code == 202, await resp.get_data(as_text=True)
    body = await resp.get_json()
    assert resp.headers["Location"] == f"/jobs/{body['id']}"
    return body


async def get_job(client, job_id: str) -> dict:
    resp = await client.get(f"/jobs/{job_id}")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.get_json()


def own(app: Quart, client) -> str:
    """Give ``client`` an owner cookie the app issued; returns what the store keeps of it."""
    token = token_for(app)
    client.set_cookie("localhost", COOKIE, token, path="/jobs")
    return token_hash(token)


def files_in(jobs_dir: Path) -> list[str]:
    return sorted(p.name for p in (jobs_dir / "results").iterdir())


def record_of(job_id: str, state: JobState, **kw) -> JobRecord:
    return JobRecord(
        **{"id": job_id, "state": state, "output": "pdf", "total": 2, "done": 0, **kw},
        created=time.time(),
    )


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    return proc.pid
