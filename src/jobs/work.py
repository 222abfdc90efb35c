"""What a job process (or job thread) runs: draw items and write them into the result file.

The runner calls these functions through a single-worker executor per job slot, so all calls
for one job run in order in the same place. By default that place is a lower-priority process
of its own (``process.py``): it does not share the worker's GIL, and the OS runs page renders
first. With ``job_executor = "thread"`` they run in a lower-priority thread of the worker.

Items render through the same path as images: ``job_for`` on validated parameters, then
``encode`` (ZIP) or the same drawing into one multi-page PDF.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ..figures import Registry
from ..render import ImageOptions, RenderJob, encode, job_for

NICE = 10  # how much lower job work runs than page renders


class JobFailed(Exception):
    """A job cannot go on; the message is shown to the user."""


def render_job(registry: Registry, item: dict[str, Any], max_pixels: int) -> RenderJob:
    """A stored (already validated) item as a render job, through the same path as images."""
    spec = registry.get(item["figure"])
    if spec is None:
        raise JobFailed(f"figure {item['figure']!r} is not available on this server")
    try:
        params = spec.params.model_validate(item["params"])
        opts = ImageOptions.model_validate(item["options"])
        return job_for(spec, params, opts, max_pixels)
    except ValueError as exc:  # validated at creation: only a server of another version
        raise JobFailed(f"an item of figure {spec.name!r} is no longer valid here") from exc


class Writer(Protocol):
    def add(self, index: int, job: RenderJob) -> int:
        """Add one item; return the bytes written so far."""

    def close(self) -> int:
        """Finish the file; return its size."""

    def abort(self) -> None: ...


class PdfWriter:
    """One page per item, written as it comes (matplotlib's multi-page PDF)."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close/abort
        # No creation date: the same seeded items give the same bytes.
        self._pdf = PdfPages(self._file, metadata={"CreationDate": None, "Creator": "figserve"})

    def add(self, index: int, job: RenderJob) -> int:
        # As render.encode, but the page goes into the open document instead of its own file.
        fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
        job.draw(fig)
        self._pdf.savefig(fig, dpi=job.canvas.dpi)
        return self._file.tell()

    def close(self) -> int:
        self._pdf.close()
        size = self._file.tell()
        self._file.close()
        return size

    def abort(self) -> None:
        self._file.close()  # the partial document is deleted by the caller


class ZipWriter:
    """One image file per item, named ``<number>-<figure>.<format>``."""

    def __init__(self, path: Path, png_level: int, total: int, created: float) -> None:
        self._png_level = png_level
        self._digits = len(str(total))
        self._date = time.gmtime(max(created, 315532800))[:6]  # zip dates start in 1980
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close/abort
        self._zip = zipfile.ZipFile(self._file, "w")

    def add(self, index: int, job: RenderJob) -> int:
        data = encode(job, self._png_level)
        info = zipfile.ZipInfo(
            f"{index + 1:0{self._digits}d}-{job.label}.{job.format}", date_time=self._date
        )
        # PNG, WebP, JPEG and PDF are compressed already; SVG is text.
        info.compress_type = zipfile.ZIP_DEFLATED if job.format == "svg" else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)
        return self._file.tell()

    def close(self) -> int:
        self._zip.close()
        size = self._file.tell()
        self._file.close()
        return size

    def abort(self) -> None:
        # Closed properly even though it is deleted, or ZipFile complains when collected.
        with contextlib.suppress(OSError, ValueError):
            self._zip.close()
        self._file.close()


# The open writers of the jobs this process renders, by job id.
_writers: dict[str, Writer] = {}
_writers_lock = threading.Lock()  # with threads, runners of several apps may share a process
# The figures, in a job process: given once when it starts (a thread gets them with each call).
_registry: Registry | None = None


def use_registry(registry: Registry) -> None:
    """Set the figures of a job process (threads get them with each call)."""
    global _registry
    _registry = registry


def init_thread() -> None:
    # Linux gives each thread its own nice value. Elsewhere this is a no-op.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def open_writer(
    job_id: str, output: str, path: Path, png_level: int, total: int, created: float
) -> None:
    writer = PdfWriter(path) if output == "pdf" else ZipWriter(path, png_level, total, created)
    with _writers_lock:
        _writers[job_id] = writer


def add_item(
    job_id: str,
    index: int,
    item: dict[str, Any],
    max_pixels: int,
    registry: Registry | None = None,
) -> int:
    figures = registry or _registry
    if figures is None:
        raise RuntimeError("no figures: the job process was not initialised")
    return _writers[job_id].add(index, render_job(figures, item, max_pixels))


def close_writer(job_id: str) -> int:
    with _writers_lock:
        writer = _writers.pop(job_id)
    return writer.close()


def abort_writer(job_id: str) -> None:
    with _writers_lock:
        writer = _writers.pop(job_id, None)
    if writer is not None:
        writer.abort()
