"""Warm figures: a render process updates a figure it kept instead of drawing it anew, and the
bytes are exactly those of a fresh render, over sequences of parameters, in PNG and SVG."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from figserve.config import Settings
from figserve.render import ImageOptions, Renderer, RenderJob, job_for
from figserve.render.pool import PoolSettings, RenderPool
from tests.support.adversarial import registry_with_adversarial_figures
from tests.support.gates import Gate
from tests.support.waiting import until_sync
from tests.support.warmfigs import WARM_FIGURES, registry_with_warm_figures

REGISTRY = registry_with_warm_figures()
PRELOAD = ["figserve.figures", "tests.support.warmfigs", "tests.support.adversarial"]
SEQUENCES = settings(
    max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)

params = st.fixed_dictionaries(
    {
        "n": st.integers(2, 120),
        "phase": st.floats(-5, 5, allow_nan=False),
        "scale": st.sampled_from([0.1, 1.0, 3.5, 80.0]),
        "title": st.sampled_from(["warm", "", "A longer title", "µ & ∑"]),
        "seed": st.integers(0, 1000),
        "bins": st.integers(1, 50),
        "days": st.integers(2, 400),
        "start": st.dates(dt.date(1990, 1, 1), dt.date(2030, 1, 1)),
        "vmax": st.sampled_from([0.1, 1.0, 7.5]),
    }
)


def job(name: str, fmt: str = "png", w: int = 240, h: int = 180, **values: Any) -> RenderJob:
    spec = REGISTRY.get(name)
    assert spec is not None
    opts = ImageOptions(format=fmt, w=w, h=h)
    return job_for(spec, spec.params(**values), opts, 10**7, png_level=3)


def _settings(**overrides: object) -> PoolSettings:
    values: dict = {
        "processes": 1,
        "background": 0,
        "deadline": 30.0,
        "memory_bytes": 0,
        "recycle_after": 10_000,
        "recycle_rss_bytes": 1 << 40,
        "warm_figures": 4,
    }
    return PoolSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def pools() -> Iterator[tuple[RenderPool, RenderPool]]:
    warm = RenderPool(_settings(), PRELOAD)
    fresh = RenderPool(_settings(warm_figures=0), PRELOAD)
    warm.start()
    fresh.start()
    yield warm, fresh
    warm.close()
    fresh.close()


@pytest.mark.parametrize("fmt", ["png", "svg"])
@pytest.mark.parametrize("name", list(WARM_FIGURES))
@SEQUENCES
@given(sequence=st.lists(params, min_size=2, max_size=5))
def test_updates_over_a_sequence_give_the_bytes_of_fresh_renders(
    pools: tuple[RenderPool, RenderPool], name: str, fmt: str, sequence: list[dict]
) -> None:
    warm, fresh = pools
    states = []
    for values in sequence:
        updated = warm.run(job(name, fmt, **values), 3)
        drawn = fresh.run(job(name, fmt, **values), 3)
        assert drawn.meta["warm"] == "off"
        assert updated.value == drawn.value, (name, fmt, values)
        states.append(updated.meta["warm"])
    assert "hit" in states[1:], states  # the sequence really went through updates


def test_a_kept_figure_is_per_figure_size_and_code_version(
    pools: tuple[RenderPool, RenderPool],
) -> None:
    warm, _ = pools
    warm.run(job("warm_line", w=300, h=200), 3)
    assert warm.run(job("warm_line", w=300, h=200, n=50), 3).meta["warm"] == "hit"
    assert warm.run(job("warm_line", "svg", w=300, h=200), 3).meta["warm"] == "hit"
    assert warm.run(job("warm_line", w=301, h=200), 3).meta["warm"] == "miss"
    other = dataclasses.replace(job("warm_line", w=300, h=200), version="0" * 32)
    assert warm.run(other, 3).meta["warm"] == "miss"


def test_kept_figures_are_bounded_least_recently_used_first_out() -> None:
    pool = RenderPool(_settings(warm_figures=2), PRELOAD)
    pool.start()
    try:
        keys = []
        for width in (200, 220, 240):
            j = job("warm_line", w=width)
            keys.append(j.warm_key)
            held = pool.run(j, 3).meta["held"]
            assert len(held) <= 2
        assert held == keys[1:]
        assert pool.run(job("warm_line", w=200), 3).meta["warm"] == "miss"  # dropped first
    finally:
        pool.close()


def test_kept_figures_are_dropped_when_a_figure_changed_the_process(
    pools: tuple[RenderPool, RenderPool], tmp_path: Path
) -> None:
    warm, _ = pools
    warm.run(job("warm_hist"), 3)
    assert warm.run(job("warm_hist", bins=3), 3).meta["warm"] == "hit"
    spec = registry_with_adversarial_figures().get("rc_set")
    assert spec is not None
    rc = job_for(spec, spec.params(**Gate(tmp_path).params("x")), ImageOptions(), 10**7)
    assert "rcParams" in warm.run(rc, 3).meta["reset"]
    assert warm.run(job("warm_hist", bins=4), 3).meta["warm"] == "miss"


async def test_an_update_that_raises_is_drawn_fresh_and_logged_once(figserve_logs) -> None:
    renderer = Renderer(
        Settings(render_processes=1, job_threads=0, warm_up=False, render_warm_figures=4),
        preload=PRELOAD,
        figures=list(REGISTRY),
    )
    reference = RenderPool(_settings(warm_figures=0), PRELOAD)
    await renderer.start()
    await asyncio.to_thread(reference.start)
    try:
        sequence = [{"n": 5}, {"n": 6, "fail": True}, {"n": 7, "fail": True}, {"n": 8}]
        results = [await renderer.render(job("warm_line", **values)) for values in sequence]
        for values, result in zip(sequence, results, strict=True):
            fresh = await asyncio.to_thread(reference.run, job("warm_line", **values), 3)
            assert result.data == fresh.value, values
        s = renderer.stats
        assert (s.warm_misses, s.warm_hits, s.warm_update_failures) == (3, 1, 2)
        records = list({id(r): r for r in figserve_logs.records}.values())
        told = [r.getMessage() for r in records if "update function" in r.message]
        assert len(told) == 1 and "RuntimeError: this update cannot handle" in told[0]
        lines = [r.getMessage() for r in records if "figure=warm_line" in r.message]
        assert [line.split("warm=")[1].split()[0] for line in lines] == [
            "miss",
            "miss",
            "miss",
            "hit",
        ]
    finally:
        await renderer.close()
        reference.close()


def test_renders_go_to_an_idle_process_that_keeps_their_figure_never_a_busy_one(
    tmp_path: Path,
) -> None:
    pool = RenderPool(_settings(processes=2), PRELOAD)
    pool.start()
    try:
        a, b = job("warm_line", w=200), job("warm_dates", w=200)
        first_a = pool.run(a, 3)
        first_b = pool.run(b, 3)
        assert first_a.pid != first_b.pid  # the second figure went to the process keeping none
        for _ in range(3):
            again_a, again_b = pool.run(a, 3), pool.run(b, 3)
            assert (again_a.pid, again_a.meta["warm"]) == (first_a.pid, "hit")
            assert (again_b.pid, again_b.meta["warm"]) == (first_b.pid, "hit")
        # While the process keeping warm_line is busy, its next render takes the other one.
        gate = Gate(tmp_path / "gate")
        with ThreadPoolExecutor(1) as ex:
            held = ex.submit(pool.run, job("warm_line", w=200, **gate.params("held")), 3)
            until_sync(lambda: gate.started() == ["held"], "the held render to start")
            other = pool.run(job("warm_line", w=200, n=9), 3)
            assert other.pid == first_b.pid and other.meta["warm"] == "miss"
            gate.open()
            assert held.result(30).pid == first_a.pid
    finally:
        pool.close()
