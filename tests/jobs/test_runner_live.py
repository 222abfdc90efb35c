"""Jobs on a real Hypercorn server with two workers (issue 5): every worker sees every job.

Each request goes over a new connection, so the kernel hands it to either worker; the test app's
``X-Test-Worker`` header says which one answered (figserve itself names no host or process), and
the job store says which worker runs a job. Every client of a test shares the cookies of the one
that made the job: jobs are private to their owner.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pypdf
import pytest

from figserve.jobs.sqlite import JobsDatabase
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.live

DEADLINE = 120.0  # seconds for any condition below; a bound, never a pause
ORDER = ["queued", "running", "done"]


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def two_workers(jobs_dir: Path) -> Iterator[LiveServer]:
    env = {"FIGSERVE_JOBS_DIR": str(jobs_dir)}
    with live_server(workers=2, env=env, app="tests.support.app:app") as srv:
        yield srv


def fresh(server: LiveServer, cookies: httpx.Cookies | None = None) -> httpx.Client:
    """A client that opens a new connection for every request."""
    return httpx.Client(
        base_url=server.url,
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
        cookies=cookies,
    )


@contextmanager
def pinned(server: LiveServer, avoid: str, cookies: httpx.Cookies) -> Iterator[httpx.Client]:
    """A keep-alive client whose connection is served by a worker other than ``avoid``."""
    for _ in range(100):
        with httpx.Client(base_url=server.url, timeout=30, cookies=cookies) as client:
            if client.get("/jobs").headers["X-Test-Worker"] != avoid:
                yield client
                return
    raise AssertionError(f"100 connections all went to worker {avoid}")


def runner_pid(jobs_dir: Path, job_id: str) -> str | None:
    """The pid of the worker running the job, from the store (never shown to clients)."""
    store = JobsDatabase(jobs_dir / "jobs.sqlite3")
    try:
        record = store.get(job_id)
    finally:
        store.close()
    return record.owner.split(":")[1] if record and record.owner else None


def items(count: int, figure: str = "histogram", **size: int) -> list[dict]:
    return [{"figure": figure, "params": {"seed": i}, **size} for i in range(count)]


def create(http: httpx.Client, job_items: list[dict], output: str = "pdf") -> httpx.Response:
    resp = http.post("/jobs", json={"items": job_items, "output": output})
    assert resp.status_code == 202, resp.text
    return resp


def pace() -> None:
    # Polls are spaced a little so they do not take the CPU from the job they watch; every
    # wait below ends on a condition or its deadline, not on this.
    time.sleep(0.01)


def poll_until(http: httpx.Client, job_id: str, done: callable) -> dict:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        job = http.get(f"/jobs/{job_id}").json()
        if done(job):
            return job
        pace()
    raise AssertionError(f"job {job_id} never reached the condition; last seen {job}")


def test_progress_result_and_listing_are_the_same_through_both_workers(two_workers, jobs_dir):
    total = 80
    with fresh(two_workers) as http:
        created = create(http, items(total, w=200, h=150))
        job_id = created.json()["id"]
        runs_on = None
        answered_by: dict[str, int] = {}
        seen_running_elsewhere = False
        last_done, last_state = 0, "queued"
        deadline = time.monotonic() + DEADLINE
        for _ in range(10_000):
            assert time.monotonic() < deadline, f"job not done in time: {last_state} {last_done}"
            resp = http.get(f"/jobs/{job_id}")
            assert resp.status_code == 200
            job = resp.json()
            assert "worker" not in job
            worker = resp.headers["X-Test-Worker"]
            answered_by[worker] = answered_by.get(worker, 0) + 1
            # Whichever worker answers, the job only moves forward.
            assert job["total"] == total
            assert job["done"] >= last_done, (job, last_done, worker)
            assert ORDER.index(job["state"]) >= ORDER.index(last_state), (job, last_state)
            last_done, last_state = job["done"], job["state"]
            if job["state"] == "running":
                runs_on = runs_on or runner_pid(jobs_dir, job_id)
                seen_running_elsewhere |= worker != runs_on
            if job["state"] == "done" and len(answered_by) == 2:
                break
            pace()
        assert len(answered_by) == 2, answered_by
        assert seen_running_elsewhere, "no poll answered by the other worker while running"
        assert (job["done"], job["result_url"]) == (total, f"/jobs/{job_id}/result")
        cookies = http.cookies
    assert runs_on is not None

    # The result downloads through the worker that did not render it.
    with pinned(two_workers, avoid=runs_on, cookies=cookies) as other:
        resp = other.get(job["result_url"])
        assert resp.status_code == 200
        assert resp.headers["X-Test-Worker"] != runs_on
        assert resp.headers["content-type"] == "application/pdf"
        assert len(pypdf.PdfReader(io.BytesIO(resp.content)).pages) == total
        listed = other.get("/jobs").json()["jobs"]
        assert job_id in [j["id"] for j in listed]


def test_cancel_through_the_worker_that_does_not_run_the_job(two_workers, jobs_dir):
    with fresh(two_workers) as http:
        job_id = create(http, items(500, figure="heatmap")).json()["id"]
        poll_until(http, job_id, lambda j: j["state"] == "running" and j["done"] >= 1)
        cookies = http.cookies
    runner = runner_pid(jobs_dir, job_id)
    assert runner is not None
    with pinned(two_workers, avoid=runner, cookies=cookies) as other:
        resp = other.delete(f"/jobs/{job_id}")
        assert resp.status_code == 200
        assert resp.headers["X-Test-Worker"] != runner
        cancelled = resp.json()
        assert cancelled["state"] == "cancelled"
    assert cancelled["done"] < 500

    with fresh(two_workers, cookies) as http:
        # The runner notices before its next item and removes its partial file.
        deadline = time.monotonic() + DEADLINE
        while list(jobs_dir.glob(f"results/{job_id}*")):
            assert time.monotonic() < deadline, "the partial file was never removed"
            assert http.get(f"/jobs/{job_id}").json()["state"] == "cancelled"
            pace()
        for _ in range(10):
            job = http.get(f"/jobs/{job_id}").json()
            assert job["state"] == "cancelled"
            # At most the item in hand when the cancel came finished; its progress is refused.
            assert job["done"] == cancelled["done"]
            assert http.get(f"/jobs/{job_id}/result").status_code == 409


def test_a_job_whose_worker_is_killed_is_resumed_by_the_next_start(tmp_path):
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path)}
    total = 60
    with live_server(workers=2, env=env) as first:
        with fresh(first) as http:
            job_id = create(http, items(total, figure="heatmap")).json()["id"]
            running = poll_until(http, job_id, lambda j: j["state"] == "running" and j["done"])
            cookies = http.cookies
        pid = int(runner_pid(tmp_path, job_id) or 0)
        assert pid in first.worker_pids()
        os.kill(pid, signal.SIGKILL)
        # Hypercorn stops the whole server when a worker dies; the job stays "running".
        first.proc.wait(timeout=60)

    with live_server(workers=2, env=env) as second, fresh(second, cookies) as http:
        # The dead worker was of this machine: its job goes back to the queue at once and
        # resumes from the items already kept, instead of failing.
        job = poll_until(http, job_id, lambda j: j["state"] not in {"queued", "running"})
        assert (job["state"], job["done"], job["error"]) == ("done", total, None)
        resp = http.get(job["result_url"])
        assert len(pypdf.PdfReader(io.BytesIO(resp.content)).pages) == total
        assert running["done"] >= 1
