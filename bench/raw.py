"""The limit without HTTP: the same figure rendered in a tight loop, and its CPU cost per image.

``raw_limit`` runs one process per core, each drawing and encoding the seed figure back to back
for a fixed time; the sum of their rates is the most figures per second this machine can make,
the number every server is compared with. ``cpu_per_image`` times single renders in one process,
figserve's path and the pyplot reference interleaved, so both see the same machine load.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from typing import Any

MEAN, VAR = 5.0, 3.0


def _renderer(kind: str, dpr: int) -> Any:
    """A zero-argument function that renders the seed figure once and returns the bytes."""
    if kind == "figserve":
        from src.config import Settings
        from src.figures.catalog import FIGURES, NormalParams
        from src.render import ImageOptions, encode, job_for

        settings = Settings.from_env()
        spec = FIGURES.get("normal")
        # Unseeded, as /fig/5_3 is: every render draws a new sample.
        job = job_for(
            spec, NormalParams(mean=MEAN, var=VAR), ImageOptions(dpr=dpr), settings.max_pixels
        )
        level = settings.png_compress_level
        return lambda: encode(job, level)
    if kind == "pyplot":
        from bench.flask_ref import render_png

        return lambda: render_png(MEAN, VAR, dpi=100 * dpr)
    raise ValueError(kind)


_RENDERERS: dict[tuple[str, int], Any] = {}


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


class RawLimit:
    """One process per core (default), kept alive so each measurement starts at once.

    Idle between measurements, so a server measured in between has the machine to itself.
    """

    def __init__(self, procs: int | None = None) -> None:
        self.procs = procs or os.cpu_count() or 1
        self._pool = multiprocessing.get_context("spawn").Pool(self.procs)
        self._warm: set[tuple[str, int]] = set()

    def measure(self, seconds: float, kind: str = "figserve", dpr: int = 1) -> dict[str, Any]:
        """Figures per second of all processes rendering flat out for ``seconds``."""
        # The first call per kind imports matplotlib and warms up before the common start.
        lead = 0.3 if (kind, dpr) in self._warm else 6.0
        self._warm.add((kind, dpr))
        start_at = time.time() + lead
        results = self._pool.starmap(_loop, [(kind, dpr, seconds, start_at)] * self.procs)
        per_proc = [count / elapsed for count, elapsed, _ in results]
        renders = sum(count for count, _, _ in results)
        return {
            "kind": kind,
            "procs": self.procs,
            "seconds": seconds,
            "renders": renders,
            "per_proc": per_proc,
            "fps": sum(per_proc),
            "cpu_ms_per_render": 1000 * sum(cpu for _, _, cpu in results) / max(1, renders),
        }

    def __enter__(self) -> RawLimit:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.terminate()
        self._pool.join()


def raw_limit(
    seconds: float, procs: int | None = None, kind: str = "figserve", dpr: int = 1
) -> dict[str, Any]:
    """A one-off measurement (starts and stops its own processes)."""
    with RawLimit(procs) as limit:
        return limit.measure(seconds, kind, dpr)


def _cpu_times(dpr: int, rounds: int) -> dict[str, Any]:
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
            times[kind].append(time.process_time() - t0)
    return {
        "dpr": dpr,
        "rounds": rounds,
        "cpu_ms": {k: statistics.median(v) * 1000 for k, v in times.items()},
        "cpu_ms_iqr": {
            k: [q * 1000 for q in statistics.quantiles(v, n=4)[::2]] for k, v in times.items()
        },
        "bytes": size,
    }


def cpu_per_image(dprs: tuple[int, ...] = (1, 3), rounds: int = 30) -> dict[int, dict[str, Any]]:
    """Median CPU time of one render, figserve's path and pyplot's, at each device pixel ratio.

    Runs in a fresh process so nothing the harness imported or cached changes the result.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        results = pool.starmap(_cpu_times, [(dpr, rounds) for dpr in dprs])
    return {r["dpr"]: r for r in results}
