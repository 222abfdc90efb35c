"""Render processes that cannot be corrupted by the figure they ran.

One render process serves the whole catalogue of adversarial figures (tests/support/
adversarial.py) in turn. After each, other figures' bytes (PNG, SVG, PDF) must be exactly those
of a clean process, the process must have put back or been replaced as the catalogue says, and
nothing the figure started may be left running.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from figserve.render import ImageOptions, RenderJob, job_for
from figserve.render.errors import RenderCrashed, RenderFailed, RenderProtocolError
from figserve.render.handles import fork_server
from figserve.render.osstate import children_of
from figserve.render.pool import PoolSettings, RenderPool
from tests.support.adversarial import CATALOGUE, registry_with_adversarial_figures
from tests.support.gates import Gate
from tests.support.procs import alive
from tests.support.waiting import until_sync

REGISTRY = registry_with_adversarial_figures()
PRELOAD = ["figserve.figures", "tests.support.gates", "tests.support.adversarial"]
# Other figures drawn after each adversarial one: text, dates, a colour bar, three formats.
REFERENCES = [("normal", "png"), ("normal", "svg"), ("timeseries", "pdf"), ("heatmap", "png")]


def job(name: str, fmt: str = "png", gate: Gate | None = None, **params: object) -> RenderJob:
    spec = REGISTRY.get(name)
    assert spec is not None
    if gate is not None:
        params = {**params, **gate.params(name[:40].replace("_", ""))}
    if spec.random:
        params.setdefault("seed", 11)
    return job_for(spec, spec.params(**params), ImageOptions(format=fmt, w=240, h=180), 10**7)


def settings(**overrides: object) -> PoolSettings:
    values: dict = {
        "processes": 1,
        "background": 0,
        "deadline": 20.0,
        "memory_bytes": 0,
        "recycle_after": 10_000,
        "recycle_rss_bytes": 1 << 40,
    }
    return PoolSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def pool() -> Iterator[RenderPool]:
    pool = RenderPool(settings(), PRELOAD)
    pool.start()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def references(pool: RenderPool) -> dict[tuple[str, str], bytes]:
    """What a clean render process draws (the pool's first process, before any figure ran)."""
    return {ref: pool.run(job(*ref), 3).value for ref in REFERENCES}


def _reported(meta: dict, key: str) -> set[str]:
    return set(meta.get(key, []))


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_what_a_figure_leaves_behind_never_reaches_the_next_render(
    pool: RenderPool, references: dict, tmp_path: Path, name: str
) -> None:
    case = CATALOGUE[name]
    gate = Gate(tmp_path / "gate")
    before = pool.lane_pids("interactive")
    # Processes of other pools of this test process (a parallel run orders tests otherwise)
    # were there before the figure ran: they are not its leftovers.
    others = set(children_of(fork_server(PRELOAD).pid)) - set(pool.pids())
    try:
        outcome = pool.run(job(name, gate=gate), 3)
    except (RenderFailed, RenderCrashed) as exc:
        assert case.fails is not False, f"{name} failed: {exc!r}"
        if isinstance(exc, RenderFailed):
            assert case.fails is True  # the figure's own failure, never a process's surprise
    else:
        assert case.fails is not True, f"{name} should have failed"
        assert outcome.value.startswith(b"\x89PNG")
        restored, recycled = _reported(outcome.meta, "reset"), _reported(outcome.meta, "recycle")
        assert case.restored <= restored, (restored, recycled)
        assert case.recycle <= recycled, (restored, recycled)
        assert case.either <= restored | recycled
        if recycled:
            assert outcome.pid not in pool.pids()
            until_sync(lambda: not alive(outcome.pid), "the replaced process to end")
        else:
            assert pool.lane_pids("interactive") == before, "a clean-up must keep the process"

    for ref, expected in references.items():
        again = pool.run(job(*ref), 3)
        assert again.value == expected, f"{ref} differs after {name}"
        assert not again.meta.get("reset") and not again.meta.get("recycle")

    marked = [int(p.name.split("-")[1]) for p in gate.folder.glob("child-*")]
    assert bool(marked) == case.children
    until_sync(lambda: not any(alive(pid) for pid in marked), "the figure's processes to end")
    server = fork_server(PRELOAD)
    until_sync(
        lambda: set(children_of(server.pid)) <= set(pool.pids()) | others,
        "no process but render processes under the fork server",
    )
    assert not (gate.folder / "pwned").exists(), "a reply ran code in the worker"


def test_a_spinning_thread_costs_later_renders_nothing(pool: RenderPool, tmp_path: Path) -> None:
    clean = [pool.run(job("normal"), 3).cpu_seconds for _ in range(3)]
    spun = pool.run(job("spin_thread", gate=Gate(tmp_path)), 3)
    until_sync(lambda: not alive(spun.pid), "the spinning process to end")
    later = [pool.run(job("normal"), 3).cpu_seconds for _ in range(3)]
    # CPU time, not wall time: a spinning thread in the same process would add to each.
    assert max(later) < 2 * statistics.median(clean) + 0.05, (clean, later)


def test_a_reply_to_another_request_is_never_served(pool: RenderPool, tmp_path: Path) -> None:
    with pytest.raises(RenderProtocolError, match="out of turn"):
        pool.run(job("fake_reply", gate=Gate(tmp_path)), 3)
    assert pool.protocol_errors >= 1
    assert pool.run(job("normal", "pdf"), 3).value.startswith(b"%PDF")


def test_an_exception_that_cannot_be_shown_fails_its_render_only(
    pool: RenderPool, tmp_path: Path
) -> None:
    before = pool.crashes
    with pytest.raises(RenderFailed, match="_Unprintable: <the exception could not be shown>"):
        pool.run(job("str_raises", gate=Gate(tmp_path)), 3)
    assert pool.crashes == before  # reported, not a dead process
    assert os.getpid() not in pool.pids()
