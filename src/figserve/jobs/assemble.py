"""A job's items as render jobs, and the tasks that build a job's result from its items.

Items render one by one into files or keys of their own (so a job resumes where it stopped);
the result is then built from them in a render process, under the same supervision as any
render: a PDF of one page per item (``pdf.py``), or a ZIP of one image per item.
"""

from __future__ import annotations

import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..figures import Registry
from ..render import RenderJob
from ..validation import Invalid, RenderRequest, from_stored
from .model import JobFailed
from .pdf import BuildPdf, Page

# Seconds the result's assembly may take per item (reading and writing a page or an entry,
# drawing its caption).
ASSEMBLE_SECONDS_PER_ITEM = 0.1
DETAIL_VALUE_CHARS = 40


def render_request(registry: Registry, item: dict[str, Any], max_pixels: int) -> RenderRequest:
    """A stored (already validated) item as a render, through the same path as images."""
    try:
        return from_stored(registry, item, max_pixels)
    except Invalid as exc:  # valid when queued: only a server of another version says this
        raise JobFailed(f"an item of figure {item['figure']!r} is not valid here: {exc}") from None


def render_job(registry: Registry, item: dict[str, Any], max_pixels: int) -> RenderJob:
    return render_request(registry, item, max_pixels).job


def item_name(index: int, total: int, job: RenderJob) -> str:
    """The item's file name inside a ZIP: ``<number>-<figure>.<format>``."""
    return f"{index + 1:0{len(str(total))}d}-{job.label}.{job.format}"


def caption(request: RenderRequest) -> tuple[str, str]:
    """A PDF page's caption: the figure's title, and its parameters and size in words."""
    values = []
    for name, value in request.params.model_dump(mode="json").items():
        if value is None or value == "":
            continue  # not given: nothing to say
        shown = str(value)
        if len(shown) > DETAIL_VALUE_CHARS:
            shown = shown[: DETAIL_VALUE_CHARS - 1] + "…"
        values.append(f"{name} = {shown}")
    size = f"{request.options.w} × {request.options.h} px"  # noqa: RUF001
    return request.spec.title, " · ".join([*values, size])


@dataclass(frozen=True)
class BuildZip:
    """One ZIP of the items' image files, named by ``item_name``."""

    parts: list[tuple[str, str]]  # (file, name in the archive)
    out: str
    created: float

    def run(self, png_level: int) -> int:
        date = time.gmtime(max(self.created, 315532800))[:6]  # zip dates start in 1980
        with zipfile.ZipFile(self.out, "w") as archive:
            for path, name in self.parts:
                info = zipfile.ZipInfo(name, date_time=date)
                # PNG, WebP, JPEG and PDF are compressed already; SVG is text.
                svg = name.endswith(".svg")
                info.compress_type = zipfile.ZIP_DEFLATED if svg else zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                with open(path, "rb") as src, archive.open(info, "w") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
        return os.path.getsize(self.out)


def build_task(
    registry: Registry,
    items: list[dict[str, Any]],
    parts: list[Path],
    out: Path,
    *,
    output: str,
    paper: str | None,
    created: float,
) -> BuildPdf | BuildZip:
    """The task that builds a result of ``output`` from the item files ``parts``."""
    requests = [render_request(registry, item, 1 << 62) for item in items]
    if output == "pdf":
        pages = [Page(str(p), *caption(r)) for p, r in zip(parts, requests, strict=True)]
        return BuildPdf(pages, str(out), paper or "figure")
    total = len(requests)
    names = [item_name(i, total, r.job) for i, r in enumerate(requests)]
    return BuildZip([(str(p), n) for p, n in zip(parts, names, strict=True)], str(out), created)
