"""Render processes under supervision: deadlines, crashes, memory cap, recycling, stopping."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from figserve.render import ImageOptions, RenderJob, job_for
from figserve.render.errors import (
    RenderCrashed,
    RenderFailed,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)
from figserve.render.pool import PoolSettings, RenderPool, fork_server
from tests.support.gates import Gate, registry_with_test_figures
from tests.support.procs import alive
from tests.support.waiting import until_sync

REGISTRY = registry_with_test_figures()
PRELOAD = ["figserve.figures", "tests.support.gates"]


def job(name: str, gate: Gate | None = None, tag: str = "", **opts: object) -> RenderJob:
    spec = REGISTRY.get(name)
    assert spec is not None
    params = gate.params(tag) if gate is not None and "gate" in spec.params.model_fields else {}
    return job_for(spec, spec.params.model_validate(params), ImageOptions(**opts), 10**7)


def settings(**overrides: object) -> PoolSettings:
    values: dict = {
        "processes": 2,
        "background": 1,
        "deadline": 10.0,
        "memory_bytes": 512 * 2**20,
        "recycle_after": 1000,
        "recycle_rss_bytes": 1 << 40,
    }
    return PoolSettings(**{**values, **overrides})


@pytest.fixture
def make_pool() -> Iterator:
    pools: list[RenderPool] = []

    def make(**overrides: object) -> RenderPool:
        pool = RenderPool(settings(**overrides), PRELOAD)
        pool.start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def png(pool: RenderPool, **kw: object) -> bytes:
    data = pool.run(job("normal", **kw), 3).value
    assert data.startswith(b"\x89PNG")
    return data


def test_renders_run_in_processes_that_are_not_this_one(make_pool) -> None:
    pool = make_pool()
    outcome = pool.run(job("normal"), 3)
    assert outcome.value.startswith(b"\x89PNG")
    assert outcome.pid in pool.pids() and outcome.pid != os.getpid()
    assert outcome.cpu_seconds > 0
    assert len(pool.pids()) == 3  # two interactive, one background


def test_a_runaway_render_is_killed_at_its_deadline_and_the_next_is_served(make_pool) -> None:
    pool = make_pool(processes=1, deadline=1.0)
    before = pool.pids()
    started = time.monotonic()
    with pytest.raises((TooComplex, RenderTimeout)) as caught:
        pool.run(job("spin"), 3)
    assert caught.value.stopped
    assert time.monotonic() - started < 5  # killed at the deadline, not after the render
    assert pool.kills == 1
    killed = set(before) - set(pool.pids())
    assert len(killed) == 1
    until_sync(lambda: not any(alive(p) for p in killed), "the killed process to be gone")
    png(pool)  # the replacement serves the next render


def test_a_render_killed_while_drawing_is_too_complex(make_pool) -> None:
    # It needs a quarter of its deadline in CPU time: a machine would have to be very busy
    # for a drawing process to get less.
    pool = make_pool(processes=1, deadline=3.0)
    with pytest.raises(TooComplex, match="more than 3 s of CPU time"):
        pool.run(job("spin"), 3)


def test_a_render_that_waits_is_killed_as_busy_not_too_complex(make_pool) -> None:
    pool = make_pool(processes=1, deadline=0.5)
    with pytest.raises(RenderTimeout, match="stopped") as caught:
        pool.run(job("stall"), 3)
    assert caught.value.stopped
    png(pool)


@pytest.mark.parametrize("name", ["crash", "segfault"])
def test_a_render_process_that_dies_costs_that_render_only(make_pool, name: str) -> None:
    pool = make_pool(processes=1)
    with pytest.raises(RenderCrashed):
        pool.run(job(name), 3)
    assert pool.crashes == 1
    png(pool)
    assert len(pool.pids()) == 2


def test_a_process_killed_from_outside_mid_render_is_replaced(make_pool, gate: Gate) -> None:
    pool = make_pool(processes=1)
    with ThreadPoolExecutor(1) as ex:
        pending = ex.submit(pool.run, job("gated", gate, "held"), 3)
        until_sync(lambda: gate.pids(), "the render to start")
        (victim,) = gate.pids()
        os.kill(victim, signal.SIGKILL)  # what the OOM killer does
        with pytest.raises(RenderCrashed):
            pending.result(timeout=10)
    assert victim not in pool.pids()
    png(pool)


def test_a_process_that_died_while_idle_is_replaced_without_failing_a_render(make_pool) -> None:
    pool = make_pool(processes=1, background=0)
    (victim,) = pool.pids()
    os.kill(victim, signal.SIGKILL)
    until_sync(lambda: not alive(victim), "the idle process to die")
    png(pool)
    assert pool.crashes == 0 and victim not in pool.pids()


def test_memory_past_the_cap_fails_the_render_not_the_machine(make_pool) -> None:
    pool = make_pool(processes=1, memory_bytes=256 * 2**20)
    with pytest.raises(TooComplex, match="256 MiB"):
        pool.run(job("hog"), 3)
    png(pool)


def test_a_figure_that_raises_reports_its_traceback_and_its_process_is_replaced(
    make_pool,
) -> None:
    pool = make_pool(processes=1, background=0)
    (first,) = pool.pids()
    with pytest.raises(RenderFailed, match="RuntimeError: secret internals") as caught:
        pool.run(job("broken"), 3)
    assert "def broken" in caught.value.remote_traceback or "broken" in (
        caught.value.remote_traceback
    )
    assert pool.pids() != [first]


def test_processes_are_recycled_after_a_number_of_renders(make_pool) -> None:
    pool = make_pool(processes=1, background=0, recycle_after=3)
    pids = [pool.run(job("normal"), 3).pid for _ in range(7)]
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert pids[3] == pids[4] == pids[5] != pids[6]
    assert pool.recycled == 2


def test_processes_are_recycled_past_a_resident_size(make_pool) -> None:
    pool = make_pool(processes=1, background=0, recycle_rss_bytes=1)
    first = pool.run(job("normal"), 3).pid
    assert pool.run(job("normal"), 3).pid != first


def test_background_renders_run_at_a_lower_priority(make_pool, gate: Gate) -> None:
    pool = make_pool(processes=1, background=1)
    with ThreadPoolExecutor(2) as ex:
        low = ex.submit(pool.run, job("gated", gate, "low"), 3, lane="background")
        high = ex.submit(pool.run, job("gated", gate, "high"), 3)
        until_sync(lambda: len(gate.pids()) == 2, "both renders to start")
        nice = {pid: os.getpriority(os.PRIO_PROCESS, pid) for pid in gate.pids()}
        gate.open()
        assert nice[low.result(10).pid] > nice[high.result(10).pid]


def test_one_lane_renders_side_by_side_in_several_processes(make_pool, gate: Gate) -> None:
    pool = make_pool(processes=2)
    with ThreadPoolExecutor(2) as ex:
        runs = [ex.submit(pool.run, job("gated", gate, f"t{i}"), 3) for i in range(2)]
        # Both started before either may finish: they run at once, in two processes.
        until_sync(lambda: len(gate.pids()) == 2, "two renders at once")
        gate.open()
        assert {r.result(10).pid for r in runs} == gate.pids()


def test_close_ends_renders_in_flight_at_once_and_leaves_no_process(make_pool, gate) -> None:
    pool = make_pool(processes=2)
    pids = pool.pids()
    with ThreadPoolExecutor(2) as ex:
        runs = [ex.submit(pool.run, job(name, gate, "h"), 3) for name in ("gated", "spin")]
        until_sync(lambda: len(gate.pids()) == 2, "both renders to start")
        started = time.monotonic()
        pool.close()
        for run in runs:
            with pytest.raises(RenderUnavailable):
                run.result(timeout=5)
        assert time.monotonic() - started < 3
    until_sync(lambda: not any(alive(p) for p in pids), "every render process to end")
    with pytest.raises(RenderUnavailable):
        pool.run(job("normal"), 3)


def test_a_dead_fork_server_is_replaced(make_pool) -> None:
    pool = make_pool(processes=1, background=0)
    png(pool)
    server = fork_server(PRELOAD)
    (child,) = pool.pids()
    os.kill(server.pid, signal.SIGKILL)
    until_sync(lambda: not server.alive, "the fork server to die")
    # Its render processes die with it (they asked the kernel to be killed with it).
    until_sync(lambda: not alive(child), "its render process to die")
    png(pool)  # the idle process was dead: a new fork server and process serve it
    assert fork_server(PRELOAD).pid != server.pid


_ORPHAN_SCRIPT = """
import sys
from figserve.render.pool import PoolSettings, RenderPool, fork_server
pool = RenderPool(PoolSettings(2, 1, 10.0, 0, 100, 1 << 40), ["figserve.figures"])
pool.start()
print(fork_server([]).pid, *pool.pids(), flush=True)
sys.stdin.read()
"""


def test_a_worker_killed_outright_leaves_no_render_process_behind() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as proc:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        proc.kill()
        proc.wait()
    until_sync(lambda: not any(alive(p) for p in pids), "every process of the worker to end")


def test_many_renders_from_many_threads_all_arrive_intact(make_pool) -> None:
    pool = make_pool(processes=2, background=0)
    barrier = threading.Barrier(6)

    def render(i: int) -> bytes:
        barrier.wait()
        return pool.run(job("normal", w=100 + i, h=80), 3).value

    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(render, range(24)))
    sizes = [Image.open(io.BytesIO(r)).size for r in results]
    assert sizes == [(100 + i, 80) for i in range(24)]


def test_readiness_brings_back_a_dead_fork_server(make_pool) -> None:
    # Taken out of rotation while not ready, a server gets no render that would revive it:
    # asking whether it is ready must be enough.
    pool = make_pool(processes=1, background=0)
    server = fork_server(PRELOAD)
    os.kill(server.pid, signal.SIGKILL)
    until_sync(lambda: not server.alive, "the fork server to die")
    assert not pool.healthy
    until_sync(lambda: pool.healthy, "a new fork server", timeout=60)
    assert fork_server(PRELOAD).pid != server.pid
    assert len(pool.pids()) == 1 and all(alive(p) for p in pool.pids())
    png(pool)
