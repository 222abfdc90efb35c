"""CPU per image of each shipped figure, without a server: ``python -m bench --render``.

For every shipped figure, size (400x300, 1200x900) and format (PNG, SVG), in one process:

- **fresh**: what a render process does for a new image: a new Figure, the figure's draw
  function, ``fit``, encoding (``figserve.render.encode``);
- **update**: what a render process does with a figure it keeps (``render/warm.py``): the
  figure's update function moves it to the next parameters, then ``fit`` and encoding;
- **plain**: the same figure drawn the plain way (``bench/plain.py``): ``Figure()``,
  ``add_subplot``, the plot calls, ``savefig``, a constrained layout where the figure needs one.

Each image gets new parameters (the next seed: a new sample, as an unseeded URL; the waves a new
frequency), the three kinds interleaved so that load from elsewhere hits them alike. Each start
is a fresh process (fonts, caches and imports as a render process has them); figures are the
median over a start's images, then min and median over starts. Also counted: how many times
``Figure.draw`` runs per image of each shipped figure, in every format (goal: once).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .measure import Budget, Machine, machine, say
from .stats import Spread, write_json

KINDS = ("fresh", "update", "plain")
GOAL_UPDATE = 0.5  # update / fresh, every figure, PNG and SVG
GOAL_SCATTER = 0.6  # normal at 400x300 PNG / the plain scatter
FORMATS_COUNTED = ("png", "svg", "pdf", "webp", "jpeg")


@dataclass(frozen=True)
class Plan:
    starts: int = 3  # fresh processes
    images: int = 12  # per figure, size, format and kind, in each start
    sizes: tuple[tuple[int, int], ...] = ((400, 300), (1200, 900))
    formats: tuple[str, ...] = ("png", "svg")

    @classmethod
    def quick(cls) -> Plan:
        return cls(starts=2, images=4)


Cell = tuple[str, int, int, str]  # figure, width, height, format


@dataclass
class RenderResult:
    machine: Machine
    plan: Plan
    # cell -> kind -> median ms of each start
    starts: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    draws: dict[str, dict[str, int]] = field(default_factory=dict)  # figure -> format -> draws
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _params(spec: Any, i: int) -> Any:
    """The parameters of image ``i``: each image a new sample, or a new frequency."""
    if spec.random:
        return spec.params(seed=1000 + i)
    return spec.params(frequency=1 + (i % 19) * 0.5)


def _one_start(plan: Plan) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """In a fresh process: median CPU ms per image of every cell and kind, and draw counts."""
    from figserve.config import Settings
    from figserve.figures import FIGURES
    from figserve.render import ImageOptions, encode, job_for
    from figserve.render.encode import draw, fit_margins, save

    from . import plain

    level = Settings.from_env().png_compress_level
    out: dict[str, dict[str, float]] = {}
    for spec in FIGURES:
        for width, height in plan.sizes:
            for fmt in plan.formats:
                opts = ImageOptions(w=width, h=height, format=fmt)

                def job(i: int, spec=spec, opts=opts) -> Any:
                    return job_for(spec, _params(spec, i), opts, 10**8, png_level=level)

                # As a render process keeps a figure (render/warm.py): drawn once, then updated.
                kept, handles = draw(job(0))
                state = {"handles": handles}

                def fresh(i: int, job=job) -> bytes:
                    return encode(job(i), level)

                def update(i: int, spec=spec, job=job, kept=kept, state=state) -> bytes:
                    state["handles"] = spec.update(kept, state["handles"], _params(spec, i))
                    fit_margins(kept)
                    return save(kept, job(i), level)

                def drawn_plain(i: int, spec=spec, width=width, height=height, fmt=fmt):
                    return plain.render(spec.name, _params(spec, i), width, height, fmt)

                kinds = {"fresh": fresh, "update": update, "plain": drawn_plain}
                times: dict[str, list[float]] = {k: [] for k in kinds}
                for i in range(1, 3):  # first-call costs (fonts, caches) out of the way
                    for run in kinds.values():
                        run(i)
                for i in range(3, 3 + plan.images):
                    for kind, run in kinds.items():
                        t0 = time.process_time()
                        run(i)
                        times[kind].append((time.process_time() - t0) * 1000)
                cell = f"{spec.name} {width}x{height} {fmt}"
                out[cell] = {k: statistics.median(v) for k, v in times.items()}
    return out, _draw_counts()


def _draw_counts() -> dict[str, dict[str, int]]:
    """``Figure.draw`` calls per 400x300 image of each shipped figure, in every format."""
    from matplotlib.figure import Figure

    from figserve.figures import FIGURES
    from figserve.render import ImageOptions, encode, job_for

    calls = []
    original = Figure.draw

    def counted(self: Figure, renderer: Any) -> None:
        calls.append(self)
        original(self, renderer)

    Figure.draw = counted  # type: ignore[method-assign]
    try:
        out: dict[str, dict[str, int]] = {}
        for spec in FIGURES:
            for fmt in FORMATS_COUNTED:
                calls.clear()
                encode(job_for(spec, _params(spec, 1), ImageOptions(format=fmt), 10**8))
                out.setdefault(spec.name, {})[fmt] = len(calls)
        return out
    finally:
        Figure.draw = original  # type: ignore[method-assign]


def run(out: Path, plan: Plan, budget: Budget) -> RenderResult:
    t0 = time.monotonic()
    result = RenderResult(machine(), plan)
    estimate = None
    for start in range(plan.starts):
        if estimate is not None and not budget.fits(estimate):
            result.skipped.append(f"starts {start + 1}-{plan.starts}: over the time budget")
            break
        say(f"render start {start + 1} of {plan.starts}: every figure, size, format and kind")
        began = time.monotonic()
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            cells, draws = pool.apply(_one_start, (plan,))
        estimate = time.monotonic() - began
        for cell, kinds in cells.items():
            for kind, ms in kinds.items():
                result.starts.setdefault(cell, {}).setdefault(kind, []).append(ms)
        result.draws = draws
    result.seconds = time.monotonic() - t0
    return result


def _spread(values: list[float]) -> Spread:
    return Spread.of(values)


def _ratio(r: RenderResult, cell: str, top: str, bottom: str) -> Spread:
    """``top / bottom`` per start (both measured in the same process, interleaved)."""
    kinds = r.starts[cell]
    return Spread.of([a / b for a, b in zip(kinds[top], kinds[bottom], strict=True)])


def write(r: RenderResult, out: Path, command: str) -> None:
    write_json(r, out / "render.json")
    twice = sorted({name for name, fmts in r.draws.items() if any(n > 1 for n in fmts.values())})
    update_ratios = [_ratio(r, cell, "update", "fresh") for cell in r.starts]
    worst_update = max((s.median for s in update_ratios), default=float("nan"))
    scatter = _ratio(r, "normal 400x300 png", "fresh", "plain") if r.starts else None
    scatter_warm = _ratio(r, "normal 400x300 png", "update", "plain") if r.starts else None
    lines = [
        "# CPU per image of each shipped figure",
        "",
        r.machine.describe(command, r.seconds),
        "",
        f"{len(r.starts and next(iter(r.starts.values()))['fresh'])} fresh processes, "
        f"{r.plan.images} images per cell and kind in each, interleaved. Milliseconds of CPU "
        "per image: median over a start's images, then min / median over starts. The machine "
        "may be shared: compare the ratios (measured side by side), not the milliseconds.",
        "",
        "| goal | measured | |",
        "|---|---|---|",
        _goal_row(
            f"CPU per 400x300 PNG of `normal` / the same scatter drawn the plain way ≤ "
            f"{GOAL_SCATTER}",
            scatter,
            GOAL_SCATTER,
            extra=f"; on the update path {_fmt(scatter_warm)}" if scatter_warm else "",
        ),
        f"| shipped figures drawn twice per image = 0 | {len(twice)} "
        f"({', '.join(twice) or 'none'}) | {'met' if not twice else '**not met**'} |",
        f"| update / fresh ≤ {GOAL_UPDATE}, every figure, PNG and SVG | worst median "
        f"{worst_update:.2f} | {'met' if worst_update <= GOAL_UPDATE else '**not met**'} |",
        "",
        "| figure | size | format | fresh ms | update ms | plain ms | update / fresh "
        "| fresh / plain |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for cell, kinds in r.starts.items():
        name, size, fmt = cell.split()
        lines.append(
            f"| {name} | {size} | {fmt} | {_fmt(_spread(kinds['fresh']), 1)} "
            f"| {_fmt(_spread(kinds['update']), 1)} | {_fmt(_spread(kinds['plain']), 1)} "
            f"| {_fmt(_ratio(r, cell, 'update', 'fresh'))} "
            f"| {_fmt(_ratio(r, cell, 'fresh', 'plain'))} |"
        )
    lines += [
        "",
        "`Figure.draw` calls per 400x300 image (fresh): "
        + "; ".join(
            f"{name} {', '.join(f'{f} {n}' for f, n in fmts.items())}"
            for name, fmts in r.draws.items()
        ),
    ]
    if r.skipped:
        lines += ["", "Skipped: " + "; ".join(r.skipped)]
    (out / "render.md").write_text("\n".join(lines) + "\n")


def _fmt(s: Spread | None, digits: int = 2) -> str:
    if s is None or not s.n:
        return "-"
    if s.n == 1:
        return f"{s.median:.{digits}f}"
    return f"{s.min:.{digits}f} / {s.median:.{digits}f}"


def _goal_row(name: str, s: Spread | None, goal: float, extra: str = "") -> str:
    met = "-" if s is None or not s.n else ("met" if s.median <= goal else "**not met**")
    return f"| {name} | {_fmt(s)}{extra} | {met} |"
