"""Lever prototype (benchmark only, not shipped): renders in a process pool per worker.

Patches ``src.render`` before the app is imported so that the render threads hand each job
to one of ``cores`` child processes and wait for the bytes with the GIL released. A worker
then uses every core whichever connections it accepted, and its event loop no longer competes
with drawing for the GIL. Served as ``hypercorn --config hypercorn.toml bench.procpool_app:app``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import threading
from typing import Any

from src import render
from src.figures import FIGURES

_encode = render.encode
_job_for = render.job_for
_pool: concurrent.futures.ProcessPoolExecutor | None = None
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class PoolJob(render.RenderJob):
    figure: str = ""
    params: Any = None


def _child(figure: str, params: Any, canvas: render.Canvas, fmt: str, level: int) -> bytes:
    spec = FIGURES.get(figure)
    job = render.RenderJob(
        draw=lambda fig: spec.draw(fig, params), canvas=canvas, format=fmt, label=figure
    )
    return _encode(job, level)


def _warm() -> None:
    _child("normal", FIGURES.get("normal").params(), render.Canvas(100, 75, 100.0), "png", 6)


def _get_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            cores = os.cpu_count() or 1
            # Hypercorn's workers are daemonic, and multiprocessing refuses children to those;
            # the pool's processes are joined when the worker exits instead.
            multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]
            _pool = concurrent.futures.ProcessPoolExecutor(
                cores, mp_context=multiprocessing.get_context("spawn")
            )
            for f in [_pool.submit(_warm) for _ in range(cores)]:
                f.result()
        return _pool


def job_for(spec: Any, params: Any, opts: Any, max_pixels: int) -> render.RenderJob:
    job = _job_for(spec, params, opts, max_pixels)
    values = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    return PoolJob(**values, figure=spec.name, params=params)


def encode(job: render.RenderJob, png_level: int = 6) -> bytes:
    if not isinstance(job, PoolJob) or FIGURES.get(job.figure) is None:
        return _encode(job, png_level)
    future = _get_pool().submit(_child, job.figure, job.params, job.canvas, job.format, png_level)
    return future.result()


def install() -> None:
    render.job_for = job_for
    render.encode = encode
