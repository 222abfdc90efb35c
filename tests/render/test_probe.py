"""The probe lane: small tasks (figures' data-version functions) in render processes of their
own, each stopped at its own deadline, never taking a process that draws images."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from figserve.config import Settings
from figserve.render import (
    ImageOptions,
    Overloaded,
    Renderer,
    RenderFailed,
    RenderTimeout,
    TooComplex,
    job_for,
    tasks,
)
from tests.support import probes
from tests.support.gates import Gate, registry_with_test_figures
from tests.support.waiting import until

REGISTRY = registry_with_test_figures()


@pytest.fixture
async def renderer() -> AsyncIterator[Renderer]:
    r = Renderer(
        Settings(render_processes=1, job_threads=0, probe_processes=1, warm_up=False),
        preload=["figserve.figures", "tests.support.gates", "tests.support.probes"],
    )
    await r.start()
    try:
        yield r
    finally:
        await r.close()


async def test_a_probe_runs_in_a_process_of_its_own_lane(renderer: Renderer, tmp_path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    first = await renderer.run_probe(probes.Version(str(data)), deadline=5)
    data.write_text("a,b\n1,2\n3,4\n")
    assert await renderer.run_probe(probes.Version(str(data)), deadline=5) != first
    pid = await renderer.run_probe(probes.WhoAmI(), deadline=5)
    assert pid in renderer.pool.lane_pids("probe")
    assert pid not in renderer.pool.lane_pids("interactive")


async def test_a_hung_probe_is_stopped_at_its_deadline_while_images_are_drawn(
    renderer: Renderer, tmp_path: Path, gate: Gate
) -> None:
    spec = REGISTRY.get("gated")
    held = asyncio.create_task(
        renderer.render(job_for(spec, spec.params(**gate.params("h")), ImageOptions(), 10**6))
    )
    await until(lambda: gate.started() == ["h"], "the image render to hold its process")
    before = renderer.pool.lane_pids("probe")
    started = time.monotonic()
    with pytest.raises(RenderTimeout) as caught:
        await renderer.run_probe(probes.Hang(str(tmp_path / "hung")), deadline=0.5)
    assert caught.value.stopped and time.monotonic() - started < 5
    assert renderer.pool.lane_pids("probe") != before  # killed and replaced
    # The next probe runs at once, though the only image process is still busy.
    assert await renderer.run_probe(probes.WhoAmI(), deadline=5) > 0
    gate.open()
    assert (await held).data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("task", "error", "match"),
    [
        (probes.Spin(), TooComplex, "CPU time"),
        (probes.Broken(), RenderFailed, "ConnectionError: database unreachable"),
        (probes.NotPlain(), RenderFailed, "not plain data"),
    ],
)
async def test_a_failing_probe_raises_the_renderers_errors(
    renderer: Renderer, task: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        await renderer.run_probe(task, deadline=1.0)  # type: ignore[arg-type]
    assert await renderer.run_probe(probes.WhoAmI(), deadline=5) > 0


async def test_probes_past_the_bound_are_refused_at_once(renderer: Renderer, tmp_path) -> None:
    limit = tasks.PROBES_PER_PROCESS
    waiting = [
        asyncio.create_task(renderer.run_probe(probes.Hang(str(tmp_path / f"h{i}")), 30))
        for i in range(limit)
    ]
    await until(lambda: (tmp_path / "h0").exists(), "the first probe to run")
    with pytest.raises(Overloaded):
        await renderer.run_probe(probes.WhoAmI(), deadline=5)
    for task in waiting:
        task.cancel()
