"""The limit without HTTP: the same figure rendered in a tight loop, and its CPU cost per image.

``RawLimit`` keeps one process per core, each drawing and encoding the seed figure back to back
for a fixed time when asked; the sum of their rates is the most figures per second this machine
can make, the number every server is compared with, and their CPU per render is "one render".
``cpu_per_image`` times single renders in one process, figserve's path and the pyplot reference
interleaved, so both see the same machine load.
"""

from __future__ import annotations

import importlib
import multiprocessing
import pkgutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .procs import CORES
from .stats import percentile

MEAN, VAR = 5.0, 3.0
_API = ("ImageOptions", "job_for", "encode")


def _render_api() -> dict[str, Any]:
    """figserve's ``ImageOptions``, ``job_for`` and ``encode``: from ``figserve.render``, or
    from the module of the ``figserve.render`` package that defines each."""
    render = importlib.import_module("figserve.render")
    found = {name: getattr(render, name) for name in _API if hasattr(render, name)}
    for info in pkgutil.iter_modules(getattr(render, "__path__", [])):
        if len(found) == len(_API):
            break
        module = importlib.import_module(f"figserve.render.{info.name}")
        for name in _API:
            if name not in found and hasattr(module, name):
                found[name] = getattr(module, name)
    missing = [n for n in _API if n not in found]
    if missing:
        raise ImportError(f"the raw limit needs figserve.render's {', '.join(missing)}")
    return found


def _renderer(kind: str, dpr: int) -> Callable[[], bytes]:
    """Renders the seed figure once per call and returns the bytes."""
    if kind == "figserve":
        from figserve.config import Settings
        from figserve.figures.catalog import FIGURES, NormalParams

        api = _render_api()
        settings = Settings.from_env()
        spec = FIGURES.get("normal")
        # Unseeded, as /fig/5_3 is: every render draws a new sample.
        params, opts = NormalParams(mean=MEAN, var=VAR), api["ImageOptions"](dpr=dpr)
        job = api["job_for"](spec, params, opts, settings.max_pixels)
        encode, level = api["encode"], settings.png_compress_level
        return lambda: encode(job, level)
    if kind == "pyplot":
        from bench.flask_ref import render_png

        return lambda: render_png(MEAN, VAR, dpi=100 * dpr)
    if kind == "plain":
        return lambda: plain_png(MEAN, VAR, dpi=100 * dpr)
    raise ValueError(kind)


def plain_png(mean: float, var: float, dpi: int = 100) -> bytes:
    """The seed's figure drawn the plain way, without pyplot: ``Figure()``, ``subplots``,
    ``scatter``, ``savefig`` as PNG; a new figure and a new sample each time."""
    import io

    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.scatter(np.random.normal(mean, var, 100), np.random.normal(mean, var, 100), s=100,
               marker="h", color="red", alpha=0.3)  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


_RENDERERS: dict[tuple[str, int], Callable[[], bytes]] = {}


def _loop(kind: str, dpr: int, seconds: float, start_at: float) -> tuple[int, float, float]:
    render = _RENDERERS.get((kind, dpr))
    if render is None:
        render = _RENDERERS[kind, dpr] = _renderer(kind, dpr)
        for _ in range(3):  # fonts, caches, first-call costs
            render()
    # All processes start together so their rates add up over the same interval.
    while time.time() < start_at:
        time.sleep(0.001)
    count, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    end = t0 + seconds
    while time.perf_counter() < end:
        render()
        count += 1
    return count, time.perf_counter() - t0, time.process_time() - cpu0


@dataclass(frozen=True)
class RawRun:
    kind: str  # figserve, pyplot or plain
    procs: int
    seconds: float
    renders: int
    fps: float  # all processes together
    cpu_ms_per_render: float


class RawLimit:
    """One process per core, kept alive so each measurement starts at once.

    Idle between measurements, so a server measured in between has the machine to itself.
    """

    def __init__(self, procs: int = CORES) -> None:
        self.procs = procs
        self._pool = multiprocessing.get_context("spawn").Pool(procs)
        self._warm: set[tuple[str, int]] = set()
        self.runs: list[RawRun] = []

    def measure(self, seconds: float, kind: str = "figserve", dpr: int = 1) -> RawRun:
        """Figures per second of all processes rendering flat out for ``seconds``."""
        # The first call per kind imports matplotlib and warms up before the common start.
        lead = 0.3 if (kind, dpr) in self._warm else 8.0
        self._warm.add((kind, dpr))
        start_at = time.time() + lead
        results = self._pool.starmap(_loop, [(kind, dpr, seconds, start_at)] * self.procs)
        renders = sum(count for count, _, _ in results)
        run = RawRun(
            kind=kind,
            procs=self.procs,
            seconds=seconds,
            renders=renders,
            fps=sum(count / elapsed for count, elapsed, _ in results),
            cpu_ms_per_render=1000 * sum(cpu for _, _, cpu in results) / max(1, renders),
        )
        if kind == "figserve" and dpr == 1:
            self.runs.append(run)
        return run

    def one_render_ms(self) -> float:
        """CPU of one 400x300 render: the median over this run's raw-limit measurements."""
        return statistics.median(r.cpu_ms_per_render for r in self.runs)

    def __enter__(self) -> RawLimit:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.terminate()
        self._pool.join()


@dataclass(frozen=True)
class CpuCost:
    """Median CPU of one render at a device pixel ratio, figserve's path and pyplot's."""

    dpr: int
    rounds: int
    figserve_ms: float
    pyplot_ms: float
    figserve_iqr_ms: tuple[float, float]
    pyplot_iqr_ms: tuple[float, float]
    figserve_bytes: int
    pyplot_bytes: int


def _cpu_times(dpr: int, rounds: int) -> CpuCost:
    renders = {kind: _renderer(kind, dpr) for kind in ("figserve", "pyplot")}
    size = {}
    for kind, render in renders.items():
        for _ in range(3):
            data = render()
        size[kind] = len(data)
    times: dict[str, list[float]] = {kind: [] for kind in renders}
    for _ in range(rounds):
        for kind, render in renders.items():  # interleaved: both see the same noise
            t0 = time.process_time()
            render()
            times[kind].append((time.process_time() - t0) * 1000)

    def iqr(v: list[float]) -> tuple[float, float]:
        return percentile(v, 25), percentile(v, 75)

    return CpuCost(
        dpr=dpr,
        rounds=rounds,
        figserve_ms=statistics.median(times["figserve"]),
        pyplot_ms=statistics.median(times["pyplot"]),
        figserve_iqr_ms=iqr(times["figserve"]),
        pyplot_iqr_ms=iqr(times["pyplot"]),
        figserve_bytes=size["figserve"],
        pyplot_bytes=size["pyplot"],
    )


def cpu_per_image(dprs: tuple[int, ...] = (1, 3), rounds: int = 30) -> list[CpuCost]:
    """In a fresh process, so nothing the harness imported or cached changes the result."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.starmap(_cpu_times, [(dpr, rounds) for dpr in dprs])
