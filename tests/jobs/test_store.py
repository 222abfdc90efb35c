"""The job store's ownership and admission: who a job belongs to, the per-client share, the disk
budget of results, and opening a database of a previous version."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from figserve.jobs import (
    Admission,
    JobRecord,
    JobState,
    ResultsFull,
    SQLiteJobStore,
    TooManyClientJobs,
    TooManyJobs,
    new_job_id,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# The schema as the first release created it, before jobs had owners.
OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, output TEXT NOT NULL, total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL, finished REAL,
    heartbeat REAL, owner TEXT, error TEXT, result_bytes INTEGER, expires REAL,
    items TEXT NOT NULL
);
"""


def record(state: JobState = JobState.QUEUED, **kw) -> JobRecord:
    fields = {"output": "zip", "total": 1, "done": 0, **kw}
    return JobRecord(id=new_job_id(), state=state, created=time.time(), **fields)


def open_together(path: Path, count: int) -> list[str]:
    """Open the store at ``path`` from ``count`` threads at once; the errors they met."""
    failures: list[str] = []
    barrier = threading.Barrier(count)

    def open_store() -> None:
        barrier.wait()
        try:
            SQLiteJobStore(path).close()
        except sqlite3.Error as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=open_store) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def test_a_database_of_the_previous_version_gains_the_owner_columns(tmp_path: Path):
    path = tmp_path / "jobs.sqlite3"
    old_id = new_job_id()
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO jobs (id, state, output, total, created, items) VALUES (?, ?, ?, ?, ?, ?)",
            (old_id, "done", "pdf", 1, time.time(), "[]"),
        )
    # Every worker opens it at start, at once.
    assert open_together(path, 6) == []
    store = SQLiteJobStore(path)
    try:
        old = store.get(old_id)
        assert old is not None and (old.client, old.bucket) == (None, None)
        assert store.get(old_id, client="someone") is None
        new = record(client="c1", bucket="c1")
        store.create(new, [], 10)
        assert store.get(new.id, client="c1") == new
    finally:
        store.close()


def test_get_and_recent_by_client(store):
    mine = [record(client="me") for _ in range(3)]
    theirs = [record(client="them") for _ in range(2)]
    for r in [*mine, *theirs]:
        store.create(r, [], 100)
    assert {r.id for r in store.recent(10, client="me")} == {r.id for r in mine}
    assert {r.id for r in store.recent(10)} == {r.id for r in mine + theirs}
    assert store.get(theirs[0].id, client="me") is None
    assert store.get(theirs[0].id) == theirs[0]
    assert len(store.recent(2, client="me")) == 2


def test_a_clients_first_job_counts_in_its_share_though_made_without_a_token(store):
    limits = Admission(max_active=100, max_bucket_active=2)
    # Made without a cookie: counted in the address's bucket, owned by the new token "c".
    store.create(record(client="c", bucket="ip:1"), [], limits)
    # With the cookie now: its own bucket, and the first job still counts.
    store.create(record(client="c", bucket="c"), [], limits)
    with pytest.raises(TooManyClientJobs):
        store.create(record(client="c", bucket="c"), [], limits)
    # The address's bucket holds one: one more client without a cookie fits.
    store.create(record(client="d", bucket="ip:1"), [], limits)
    with pytest.raises(TooManyClientJobs):
        store.create(record(client="e", bucket="ip:1"), [], limits)


def test_the_global_limit_comes_first(store):
    store.create(record(client="a", bucket="a"), [], 1)
    with pytest.raises(TooManyJobs) as info:
        store.create(record(client="b", bucket="b"), [], Admission(1, max_bucket_active=5))
    assert not isinstance(info.value, TooManyClientJobs)


def test_the_results_budget_reserves_room_for_what_active_jobs_may_write(store):
    now = time.time()
    done = record(JobState.DONE, result_bytes=600, finished=now, expires=now + 120)
    store.create(done, [], 10)
    limits = Admission(max_active=10, results_quota_bytes=1000, reserve_bytes=150)
    store.create(record(), [], limits)  # 600 stored + 150 for it = 750
    store.create(record(), [], limits)  # 600 + 2 x 150 = 900
    with pytest.raises(ResultsFull) as info:
        store.create(record(), [], limits)  # 600 + 3 x 150 = 1050
    assert 100 <= info.value.retry_after <= 120  # when the stored result expires
    store.delete(done.id)
    store.create(record(), [], limits)  # 3 x 150


events = st.lists(
    st.tuples(
        st.sampled_from(["create", "end"]),
        st.sampled_from(["a", "b", "c"]),  # client
        st.booleans(),  # made with its cookie (else in the address's bucket)
    ),
    max_size=25,
)


@FAST
@given(events, st.integers(1, 4), st.integers(1, 3))
def test_admission_matches_a_model_of_the_limits(tmp_path_factory, events, total, share):
    store = SQLiteJobStore(tmp_path_factory.mktemp("store") / "jobs.sqlite3")
    limits = Admission(max_active=total, max_bucket_active=share)
    active: list[JobRecord] = []
    try:
        for kind, client, with_cookie in events:
            if kind == "end":
                if active:
                    ended = active.pop(0)
                    store.cancel(ended.id, time.time(), time.time() + 60)
                continue
            new = record(client=client, bucket=client if with_cookie else "ip")
            in_share = sum(r.bucket == new.bucket or r.client == new.client for r in active)
            if len(active) >= total:
                expected: type[Exception] | None = TooManyJobs
            elif in_share >= share:
                expected = TooManyClientJobs
            else:
                expected = None
            if expected is None:
                store.create(new, [], limits)
                active.append(new)
            else:
                with pytest.raises(expected) as info:
                    store.create(new, [], limits)
                assert type(info.value) is expected
    finally:
        store.close()


def test_workers_starting_together_all_open_a_fresh_store(tmp_path: Path) -> None:
    # Every Hypercorn worker opens the shared database at start; none may fail with "locked".
    for round_ in range(20):
        assert open_together(tmp_path / f"jobs-{round_}.sqlite3", 8) == []


class JobsNeverLost(RuleBasedStateMachine):
    """Any interleaving of runners claiming, progressing, stopping, dying and being taken back,
    and of clients cancelling: every job stays in the store, an active job has exactly one
    runner or none, progress never goes back, and a job fails for dying runners only after its
    attempts are used up."""

    MAX_ATTEMPTS = 3
    STALE = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.store = SQLiteJobStore(self.dir / "jobs.sqlite3")
        self.now = 1000.0
        self.ids: list[str] = []
        self.done: dict[str, int] = {}
        self.running: dict[str, str] = {}  # job -> the runner that claimed it
        self.ended: set[str] = set()

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(total=st.integers(1, 4))
    def submit(self, total: int) -> None:
        job = record(total=total)
        self.store.create(job, [{}] * total, 10**6)
        self.ids.append(job.id)
        self.done[job.id] = 0

    @rule(runner=st.sampled_from(["a", "b", "c"]))
    def claim(self, runner: str) -> None:
        claimed = self.store.claim(runner, self.now)
        if claimed is not None:
            assert claimed.id not in self.running and claimed.id not in self.ended
            assert claimed.done == self.done[claimed.id]  # resumes where it stopped
            self.running[claimed.id] = runner

    @rule(data=st.data())
    def progress(self, data) -> None:
        if not self.running:
            return
        job_id = data.draw(st.sampled_from(sorted(self.running)))
        job = self.store.get(job_id)
        assert job is not None
        if job.done < job.total and self.store.progress(
            job_id, self.running[job_id], job.done + 1, self.now
        ):
            self.done[job_id] = job.done + 1

    @rule(data=st.data())
    def orderly_stop(self, data) -> None:
        if self.running:
            job_id = data.draw(st.sampled_from(sorted(self.running)))
            assert self.store.requeue(job_id, self.running.pop(job_id))

    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data, ok: bool) -> None:
        if self.running:
            job_id = data.draw(st.sampled_from(sorted(self.running)))
            state = JobState.DONE if ok else JobState.FAILED
            assert self.store.finish(job_id, self.running.pop(job_id), state, self.now, self.now)
            self.ended.add(job_id)

    @rule(data=st.data())
    def cancel(self, data) -> None:
        if self.ids:
            job_id = data.draw(st.sampled_from(self.ids))
            if self.store.cancel(job_id, self.now, self.now) is not None:
                self.running.pop(job_id, None)
                self.ended.add(job_id)

    @rule(runner=st.sampled_from(["a", "b", "c"]), wait=st.floats(0, 60))
    def runner_dies(self, runner: str, wait: float) -> None:
        # Its heartbeat stops; later another runner takes its jobs back (or one of this machine
        # sees its process gone at once).
        self.now += wait
        for other in {"a", "b", "c"} - {runner}:
            self.store.heartbeat(other, self.now)
        requeued, failed = self.store.take_back(
            self.now - self.STALE, [runner], self.now, self.now, self.MAX_ATTEMPTS
        )
        for job_id in requeued + failed:
            assert self.running.pop(job_id, None) is not None
        for job_id in failed:
            job = self.store.get(job_id)
            assert job is not None and job.attempts >= self.MAX_ATTEMPTS
            self.ended.add(job_id)

    @invariant()
    def nothing_is_lost(self) -> None:
        for job_id in self.ids:
            job = self.store.get(job_id)
            assert job is not None, "a job vanished"
            assert job.done == self.done[job_id] <= job.total
            if job_id in self.ended:
                assert not job.active
            elif job_id in self.running:
                assert job.state is JobState.RUNNING and job.owner == self.running[job_id]
            else:
                assert job.state is JobState.QUEUED and job.owner is None


JobsNeverLost.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)
test_jobs_are_never_lost = JobsNeverLost.TestCase
