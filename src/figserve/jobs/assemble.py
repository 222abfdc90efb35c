"""A job's item as a render job, and the tasks that assemble a job's result from its items.

Items render one by one into files of their own (so a job resumes where it stopped after a
restart); the result is then built from those files in a render process, under the same
supervision as any render: a PDF of one page per item, or a ZIP of one image per item.
"""

from __future__ import annotations

import contextlib
import os
import time
import zipfile
from dataclasses import dataclass
from typing import Any

from pypdf import PdfReader, PdfWriter

from ..figures import Registry
from ..render import RenderJob
from ..validation import Invalid, from_stored


class JobFailed(Exception):
    """A job cannot go on; the message is shown to the user."""


def render_job(registry: Registry, item: dict[str, Any], max_pixels: int) -> RenderJob:
    """A stored (already validated) item as a render job, through the same path as images."""
    try:
        return from_stored(registry, item, max_pixels).job
    except Invalid as exc:  # valid when queued: only a server of another version says this
        raise JobFailed(f"an item of figure {item['figure']!r} is not valid here: {exc}") from None


def item_name(index: int, total: int, job: RenderJob) -> str:
    """The item's file name inside a ZIP: ``<number>-<figure>.<format>``."""
    return f"{index + 1:0{len(str(total))}d}-{job.label}.{job.format}"


@dataclass(frozen=True)
class BuildPdf:
    """One PDF of the items' single-page PDFs, in order."""

    parts: list[str]
    out: str

    def run(self, png_level: int) -> int:
        writer = PdfWriter()
        for path in self.parts:
            writer.append(PdfReader(path))
        # Each page carries its own copy of the fonts and styles: keep one of each.
        writer.compress_identical_objects()
        writer.add_metadata({"/Producer": "figserve", "/Creator": "figserve"})
        with open(self.out, "wb") as f:
            writer.write(f)
        return os.path.getsize(self.out)


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


def write_part(path: str, data: bytes) -> None:
    """Write an item's file whole or not at all: a crash never leaves half an item."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def remove_tree(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        os.rmdir(path)
