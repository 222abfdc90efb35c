"""Embedded mode when what jobs depend on breaks: the database locked by another process,
deleted or overwritten, the results folder deleted while a job runs, a cancel racing a delete.
Real SQLite files, a real second process holding the lock, real render processes.

Every job route answers within a bound (503 with Retry-After past it, never a 500), readiness
says so, and what can be made again is made again."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from figserve.config import Settings
from figserve.jobs import JobState, jobs_dir
from tests.jobs.conftest import WAIT, entered, gated, lane_of, own, runner_of, start
from tests.support.waiting import until

# FIGSERVE_JOB_STORE_TIMEOUT as shipped: a new database made on a loaded machine takes a
# good part of a second, which a shorter bound would refuse as a store in trouble.
STORE_TIMEOUT = 2.0
BOUND = STORE_TIMEOUT + 1.5  # what any job route may take while the store is in trouble


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return {**app_config, "job_store_timeout": STORE_TIMEOUT, "job_poll_interval": 0.1}


# A process that takes the database's write lock and keeps it until told: an sqlite3 shell
# left inside a transaction, a backup tool, a long write. (In WAL mode readers go on.)
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN " + sys.argv[2])
conn.execute("UPDATE jobs SET done = done")
print("holding", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@pytest.fixture
def holder(jobs_dir: Path) -> Iterator:
    """Start a process that holds the job database's lock until the test lets go."""
    procs: list[subprocess.Popen[str]] = []

    def hold(kind: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(jobs_dir / "jobs.sqlite3"), kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        return proc

    yield hold
    for proc in procs:
        proc.communicate("", timeout=10)


async def timed(call) -> tuple[float, object]:
    t0 = time.monotonic()
    resp = await call
    return time.monotonic() - t0, resp


def no_errors(logs: pytest.LogCaptureFixture, but: str = "") -> None:
    errors = [r.getMessage() for r in logs.records if r.levelno >= logging.ERROR]
    assert [e for e in errors if not (but and but in e)] == []


async def readiness(client) -> tuple[int, str]:
    resp = await client.get("/readyz")
    return resp.status_code, await resp.get_data(as_text=True)


@pytest.mark.parametrize("kind", ["IMMEDIATE", "EXCLUSIVE"])
async def test_a_database_locked_by_another_process_answers_503_in_bounded_time(
    app, client, gate, holder, kind, figserve_logs
):
    mine = own(app, client)
    job = await start(client, [{"figure": "waves"}])
    await runner_of(app).wait(job["id"], WAIT)
    proc = holder(kind)
    calls = [
        lambda: client.post("/jobs", json={"items": [{"figure": "waves"}]}),
        lambda: client.delete(f"/jobs/{job['id']}"),
    ]
    for call in calls:
        seconds, resp = await timed(call())
        assert resp.status_code == 503, await resp.get_data(as_text=True)
        assert int(resp.headers["Retry-After"]) >= 1
        detail = (await resp.get_json())["detail"]
        assert "locked by another process" in detail or "did not answer within" in detail
        assert seconds < BOUND
    await until(lambda: not runner_of(app).ready, "readiness to say so", WAIT)
    assert (await readiness(client))[0] == 503
    proc.communicate("", timeout=10)  # the other process lets go
    await until(lambda: runner_of(app).ready, "jobs to be ready again", WAIT)
    assert (await client.get(f"/jobs/{job['id']}")).status_code == 200
    assert await readiness(client) == (200, "ready\n")
    later = await start(client, [{"figure": "waves"}])
    assert (await runner_of(app).wait(later["id"], WAIT)).state is JobState.DONE
    assert mine  # the owner's jobs stayed theirs throughout
    no_errors(figserve_logs)


async def test_requests_do_not_pile_up_behind_a_locked_database(app, client, holder):
    own(app, client)
    holder("EXCLUSIVE")
    t0 = time.monotonic()
    body = {"items": [{"figure": "waves"}]}
    answers = await asyncio.gather(*(client.post("/jobs", json=body) for _ in range(30)))
    assert {r.status_code for r in answers} == {503}
    assert time.monotonic() - t0 < BOUND


async def test_a_database_deleted_while_serving_is_made_again(
    app, client, gate, jobs_dir, figserve_logs
):
    own(app, client)
    before = await start(client, [{"figure": "waves"}])
    running = await start(client, [gated(gate, "a"), gated(gate, "b")])
    await entered(gate, 1)
    for suffix in ("", "-wal", "-shm"):
        (jobs_dir / f"jobs.sqlite3{suffix}").unlink(missing_ok=True)
    # The next call makes a new, empty database: the jobs it held are gone, nothing breaks.
    assert (await client.get(f"/jobs/{before['id']}")).status_code == 404
    assert (await (await client.get("/jobs")).get_json())["jobs"] == []
    gate.let_through("a")
    gate.let_through("b")
    await until(lambda: not lane_of(app).running, "the lost job's runner to stop", WAIT)
    assert (await client.get(f"/jobs/{running['id']}")).status_code == 404
    later = await start(client, [{"figure": "waves"}])
    assert (await runner_of(app).wait(later["id"], WAIT)).state is JobState.DONE
    assert await readiness(client) == (200, "ready\n")
    no_errors(figserve_logs)


@pytest.mark.parametrize("how", ["replaced", "in place"])
async def test_a_damaged_database_answers_503_until_it_is_restored(app, client, jobs_dir, how):
    own(app, client)
    job = await start(client, [{"figure": "waves"}])
    await runner_of(app).wait(job["id"], WAIT)
    path = jobs_dir / "jobs.sqlite3"
    garbage = b"this is not a database, an operator copied the wrong file here " * 100
    # Another file moved into its place, with its write-ahead log gone (else SQLite would read
    # the old pages from there).
    for suffix in ("-wal", "-shm"):
        (jobs_dir / f"jobs.sqlite3{suffix}").unlink(missing_ok=True)
    (jobs_dir / "garbage").write_bytes(garbage)
    (jobs_dir / "garbage").replace(path)
    calls = [
        lambda: client.get("/jobs"),
        lambda: client.get(f"/jobs/{job['id']}"),
        lambda: client.post("/jobs", json={"items": [{"figure": "waves"}]}),
    ]
    for call in calls:
        seconds, resp = await timed(call())
        assert resp.status_code == 503, await resp.get_data(as_text=True)
        assert resp.headers["Retry-After"]
        assert "restore it, or move it away" in (await resp.get_json())["detail"]
        assert seconds < BOUND
    status, text = await readiness(client)
    assert status == 503 and "jobs: the job database" in text
    # Moved away: a new database is made; the operator can restore theirs later.
    path.unlink()
    await until(lambda: runner_of(app).ready, "jobs to be ready again", WAIT)
    assert await readiness(client) == (200, "ready\n")
    assert (await client.get("/jobs")).status_code == 200


async def test_results_deleted_while_a_job_runs_are_drawn_again(
    app, client, gate, jobs_dir, figserve_logs
):
    own(app, client)
    job = await start(client, [gated(gate, "a"), gated(gate, "b")])
    gate.let_through("a")
    await entered(gate, 2)  # item 1 is kept in its file, item 2 is drawing
    shutil.rmtree(jobs_dir / "results")  # a cleaner, or an operator
    gate.let_through("b")
    ended = await runner_of(app).wait(job["id"], WAIT)
    assert ended is not None and ended.state is JobState.DONE, ended
    assert sorted(gate.started()) == ["a", "a", "b"]  # item 1 was drawn again
    data = await (await client.get(f"/jobs/{job['id']}/result")).get_data()
    assert data.startswith(b"%PDF")
    later = await start(client, [{"figure": "waves"}])
    assert (await runner_of(app).wait(later["id"], WAIT)).state is JobState.DONE
    no_errors(figserve_logs)


async def test_a_cancel_racing_a_delete_logs_no_error(app, client, gate, figserve_logs):
    own(app, client)
    for round_ in range(8):
        tag = f"r{round_}"
        job = await start(client, [gated(gate, tag), {"figure": "waves"}])
        await until(lambda t=tag: t in gate.started(), "the item to begin", WAIT)
        url = f"/jobs/{job['id']}"
        gate.let_through(tag)
        answers = await asyncio.gather(*(client.delete(url) for _ in range(4)))
        assert {r.status_code for r in answers} <= {200, 204, 404}
        await until(lambda: not lane_of(app).running, "the runner to let go", WAIT)
        await client.delete(url)
        assert (await client.get(url)).status_code == 404
    no_errors(figserve_logs)


def test_the_default_state_lives_out_of_reach_of_temp_cleaners(monkeypatch, tmp_path):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert jobs_dir(Settings()) == tmp_path / "state" / "figserve" / "jobs"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jobs_dir(Settings()) == tmp_path / "home" / ".local" / "state" / "figserve" / "jobs"
    # A systemd unit with StateDirectory=figserve.
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var-lib-figserve"))
    assert jobs_dir(Settings()) == tmp_path / "var-lib-figserve" / "jobs"
    assert (tmp_path / "var-lib-figserve" / "jobs").stat().st_mode & 0o077 == 0
