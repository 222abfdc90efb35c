"""A PDF report people read: one page per figure, on paper of a standard size, with a caption.

Each item is drawn on its own as a one-page PDF at the figure's size (the same bytes its image
URL gives). The report puts each on an A4 or Letter page, scaled to fit the space below a
caption that names the figure and its parameters, with the page number at the foot and a
bookmark per page. ``paper="figure"`` keeps each page at its figure's own size, without a
caption (the pages are the items, unchanged).

Runs in a render process (``BuildPdf.run``), under the deadline of an assembly.
"""

from __future__ import annotations

import io
import os
import textwrap
from dataclasses import dataclass

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    RectangleObject,
    StreamObject,
)

# Paper sizes in points (1/72 inch), portrait.
PAPERS = {"a4": (595.28, 841.89), "letter": (612.0, 792.0)}
PAPER_CHOICES = ("a4", "letter", "figure")
MARGIN = 48.0  # points: about 17 mm
TITLE_PT, DETAIL_PT, FOOT_PT = 14.0, 9.0, 8.0
DETAIL_LINES = 3
DETAIL_CHARS = 95  # characters of a detail line at DETAIL_PT across the text width of A4
GAP = 12.0  # between the caption and the figure
FIGURE = "/FsFigure"  # the page's name of its figure (the caption page has no XObject)


@dataclass(frozen=True)
class Page:
    path: str  # the item's one-page PDF
    title: str
    detail: str


@dataclass(frozen=True)
class BuildPdf:
    """One PDF of the items' pages, in order (see the module's notes)."""

    pages: list[Page]
    out: str
    paper: str = "a4"
    title: str = "figserve report"

    def run(self, png_level: int) -> int:
        writer = PdfWriter()
        if self.paper in PAPERS:
            self._laid_out(writer)
        else:
            for page in self.pages:
                writer.append(PdfReader(page.path))
        for number, page in enumerate(self.pages):
            writer.add_outline_item(f"{number + 1}. {page.title}", number)
        # Each page carries its own copy of the fonts and styles: keep one of each.
        writer.compress_identical_objects()
        writer.add_metadata({"/Producer": "figserve", "/Creator": "figserve", "/Title": self.title})
        with open(self.out, "wb") as f:
            writer.write(f)
        return os.path.getsize(self.out)

    def _laid_out(self, writer: PdfWriter) -> None:
        width, height = PAPERS[self.paper]
        captions = PdfReader(io.BytesIO(caption_pages(self.pages, width, height)))
        top = height - MARGIN - caption_height()
        for page, caption in zip(self.pages, captions.pages, strict=True):
            base = writer.add_page(caption)  # pages are changed once they are the writer's
            item = PdfReader(page.path).pages[0]
            place(writer, base, item, (MARGIN, MARGIN + FOOT_PT + GAP, width - MARGIN, top - GAP))


def place(
    writer: PdfWriter, base: PageObject, item: PageObject, box: tuple[float, float, float, float]
) -> None:
    """Draw ``item`` on ``base``, scaled to fit ``box`` (x0, y0, x1, y1), centred across it and
    at its top.

    The item page becomes a form XObject that the page draws once under a transformation: its
    content is copied as it is, never parsed and rewritten (as merging two pages does, which
    costs time in proportion to the figure's drawing and duplicates its resources).
    """
    x0, y0, x1, y1 = box
    media = item.mediabox
    w, h = float(media.width), float(media.height)
    scale = min((x1 - x0) / w, (y1 - y0) / h)
    x = x0 + ((x1 - x0) - w * scale) / 2 - float(media.left) * scale
    y = y1 - h * scale - float(media.bottom) * scale
    form = StreamObject()
    form.set_data(item.get_contents().get_data())
    form[NameObject("/Type")] = NameObject("/XObject")
    form[NameObject("/Subtype")] = NameObject("/Form")
    form[NameObject("/BBox")] = RectangleObject(media)
    form[NameObject("/Resources")] = item["/Resources"].clone(writer)
    resources = base["/Resources"].get_object()
    if "/XObject" not in resources:
        resources[NameObject("/XObject")] = DictionaryObject()
    resources["/XObject"].get_object()[NameObject(FIGURE)] = writer._add_object(form)
    draw = DecodedStreamObject()
    draw.set_data(f"q {scale:.6f} 0 0 {scale:.6f} {x:.4f} {y:.4f} cm {FIGURE} Do Q\n".encode())
    contents = base["/Contents"].get_object()
    streams = (
        ArrayObject(contents)
        if isinstance(contents, ArrayObject)
        else ArrayObject([base.raw_get("/Contents")])
    )
    streams.append(writer._add_object(draw))
    base[NameObject("/Contents")] = streams


def caption_height() -> float:
    return (TITLE_PT + DETAIL_LINES * DETAIL_PT) * 1.3


def caption_pages(pages: list[Page], width: float, height: float) -> bytes:
    """A PDF of empty pages of the given size that carry each page's caption and number."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 72, height / 72), dpi=72)
    left = MARGIN / width
    top = 1 - MARGIN / height
    # Text as given: a "$" in a parameter is a dollar sign, not mathtext.
    style = {"family": "DejaVu Sans", "color": "#222222", "va": "top", "ha": "left"}
    style |= {"parse_math": False}
    title = fig.text(left, top, "", fontsize=TITLE_PT, fontweight="bold", **style)
    detail = fig.text(
        left, top - TITLE_PT * 1.4 / height, "", fontsize=DETAIL_PT, linespacing=1.3, **style
    )
    foot = fig.text(
        1 - left, MARGIN / height, "", fontsize=FOOT_PT, **{**style, "ha": "right", "va": "bottom"}
    )
    out = io.BytesIO()
    with PdfPages(out, metadata={"Creator": "figserve", "Producer": "figserve"}) as pdf:
        for number, page in enumerate(pages):
            title.set_text(_line(page.title, 70))
            detail.set_text(_lines(page.detail))
            foot.set_text(f"{number + 1} / {len(pages)}")
            pdf.savefig(fig)
    return out.getvalue()


def _line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lines(text: str) -> str:
    lines = textwrap.wrap(" ".join(text.split()), DETAIL_CHARS)
    if len(lines) > DETAIL_LINES:
        lines = [
            *lines[: DETAIL_LINES - 1],
            _line(" ".join(lines[DETAIL_LINES - 1 :]), DETAIL_CHARS),
        ]
    return "\n".join(lines)
