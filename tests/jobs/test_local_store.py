"""The SQLite store of embedded mode on its own: opening the database of an earlier release, many
workers opening a new one at once, and the embedded lane's claims (by state machine: no job lost
whatever runners claim, stop, die or are taken back)."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from figserve.jobs import Admission, JobRecord, JobState, JobsUnavailable, new_job_id
from figserve.jobs.sqlite import JobsDatabase

# The schema as the first release created it, before jobs had owners or listed items.
OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, output TEXT NOT NULL, total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL, finished REAL,
    heartbeat REAL, owner TEXT, error TEXT, result_bytes INTEGER, expires REAL,
    items TEXT NOT NULL
);
"""
MANY = Admission(max_active=10**6)


def record(state: JobState = JobState.QUEUED, **kw) -> JobRecord:
    fields = {"output": "zip", "total": 1, "done": 0, **kw}
    return JobRecord(id=new_job_id(), state=state, created=time.time(), **fields)


def open_together(path: Path, count: int) -> list[str]:
    """Open the database at ``path`` from ``count`` threads at once; the errors they met."""
    failures: list[str] = []
    barrier = threading.Barrier(count)

    def open_db() -> None:
        barrier.wait()
        db = JobsDatabase(path)
        try:
            db.check()
        except JobsUnavailable as exc:
            failures.append(repr(exc))
        finally:
            db.close()

    threads = [threading.Thread(target=open_db) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_a_database_of_the_first_release_is_brought_up_to_date(tmp_path: Path):
    path = tmp_path / "jobs.sqlite3"
    old_done, old_running = new_job_id(), new_job_id()
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        for job_id, state, done in ((old_done, "done", 1), (old_running, "running", 2)):
            db.execute(
                "INSERT INTO jobs (id, state, output, total, done, created, items) "
                "VALUES (?, ?, 'pdf', 3, ?, ?, '[]')",
                (job_id, state, done, time.time()),
            )
    # Every worker opens it at start, at once.
    assert open_together(path, 6) == []
    db = JobsDatabase(path)
    try:
        old = db.get(old_done)
        assert old is not None and (old.client, old.bucket, old.paper) == (None, None, None)
        # The items a running job had counted are listed: it resumes after them.
        assert db.done_indexes(old_running) == {0, 1}
        assert db.done_indexes(old_done) == set()
        new = record(client="c1", bucket="c1", paper="a4")
        db.create(new, [], MANY)
        assert db.get(new.id) == new
    finally:
        db.close()


def test_workers_starting_together_all_open_a_fresh_database(tmp_path: Path) -> None:
    # Every Hypercorn worker opens the shared database at start; none may fail with "locked".
    for round_ in range(20):
        assert open_together(tmp_path / f"jobs-{round_}.sqlite3", 8) == []


class ClaimsNeverLost(RuleBasedStateMachine):
    """The embedded lane's claims: any interleaving of runners claiming, keeping items,
    stopping, dying and being taken back, and of clients cancelling. Every job stays, an active
    job has exactly one runner or none, its kept items never go back, and a job fails for dying
    runners only after its attempts are used up."""

    MAX_ATTEMPTS = 3
    STALE = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.db = JobsDatabase(self.dir / "jobs.sqlite3")
        self.now = 1000.0
        self.ids: list[str] = []
        self.done: dict[str, int] = {}
        self.running: dict[str, str] = {}  # job -> the runner that claimed it
        self.ended: set[str] = set()

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(total=st.integers(1, 4))
    def submit(self, total: int) -> None:
        job = record(total=total)
        self.db.create(job, [{}] * total, MANY)
        self.ids.append(job.id)
        self.done[job.id] = 0

    @rule(runner=st.sampled_from(["a", "b", "c"]))
    def claim(self, runner: str) -> None:
        claimed = self.db.claim(runner, self.now)
        if claimed is not None:
            assert claimed.id not in self.running and claimed.id not in self.ended
            assert claimed.done == self.done[claimed.id]  # resumes where it stopped
            self.running[claimed.id] = runner

    @rule(data=st.data())
    def keep_item(self, data) -> None:
        if not self.running:
            return
        job_id = data.draw(st.sampled_from(sorted(self.running, key=self.ids.index)))
        job = self.db.get(job_id)
        assert job is not None
        if job.done < job.total:
            held = self.db.heartbeat(self.running[job_id], [job_id], self.now)
            assert held == {job_id}
            assert self.db.put_item(job_id, job.done, 1, 10**9, self.now) == job.done + 1
            self.done[job_id] = job.done + 1

    @rule(data=st.data())
    def orderly_stop(self, data) -> None:
        if self.running:
            job_id = data.draw(st.sampled_from(sorted(self.running, key=self.ids.index)))
            assert self.db.requeue(job_id, self.running.pop(job_id))

    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data, ok: bool) -> None:
        if self.running:
            job_id = data.draw(st.sampled_from(sorted(self.running, key=self.ids.index)))
            self.running.pop(job_id)
            if ok:
                assert self.db.complete(job_id, self.now, self.now, 10)
                self.done[job_id] = self.db.get(job_id).total
            else:
                assert self.db.end(job_id, JobState.FAILED, self.now, self.now, "bad")
            self.ended.add(job_id)

    @rule(data=st.data())
    def cancel(self, data) -> None:
        if self.ids:
            job_id = data.draw(st.sampled_from(self.ids))
            if self.db.end(job_id, JobState.CANCELLED, self.now, self.now, None):
                self.running.pop(job_id, None)
                self.ended.add(job_id)
                self.done[job_id] = self.db.get(job_id).done

    @rule(runner=st.sampled_from(["a", "b", "c"]), wait=st.floats(0, 60))
    def runner_dies(self, runner: str, wait: float) -> None:
        # Its heartbeat stops; later another runner takes its jobs back (or one of this machine
        # sees its process gone at once).
        self.now += wait
        for other in {"a", "b", "c"} - {runner}:
            mine = [j for j, r in self.running.items() if r == other]
            assert self.db.heartbeat(other, mine, self.now) == set(mine)
        requeued, failed = self.db.take_back(
            self.now - self.STALE, [runner], self.now, self.now, self.MAX_ATTEMPTS
        )
        for job_id in requeued + failed:
            assert self.running.pop(job_id, None) is not None
        for job_id in failed:
            job = self.db.get(job_id)
            assert job is not None and job.attempts >= self.MAX_ATTEMPTS
            self.ended.add(job_id)

    @invariant()
    def nothing_is_lost(self) -> None:
        for job_id in self.ids:
            job = self.db.get(job_id)
            assert job is not None, "a job vanished"
            assert job.done == self.done[job_id] <= job.total
            if job_id in self.ended:
                assert not job.active
            elif job_id in self.running:
                assert job.state is JobState.RUNNING and job.owner == self.running[job_id]
            else:
                assert job.state is JobState.QUEUED and job.owner is None


ClaimsNeverLost.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
test_claims_never_lose_a_job = ClaimsNeverLost.TestCase
