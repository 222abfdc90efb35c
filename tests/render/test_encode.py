"""figserve's PNG path shows exactly what matplotlib's own PNG writer would.

``encode`` draws through ``savefig`` as before but writes the PNG itself (no per-row filter
search, RGB when opaque): cheaper, and these tests hold it to the same pixels as the
straightforward ``savefig(format="png")`` at every size, for every figure in the catalog.
"""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from figserve.figures import FIGURES
from figserve.figures.layout import fit_unless_laid_out
from figserve.render import (
    Canvas,
    Drawing,
    ImageOptions,
    RenderJob,
    canvas_for,
    encode,
    job_for,
)
from figserve.render.encode import _save_options

MAX_PIXELS = 6_000_000


def reference_png(job: RenderJob, level: int = 6) -> bytes:
    """The straightforward path: a fresh Figure and matplotlib's PNG writer (Pillow)."""
    fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
    job.drawing(fig)
    fit_unless_laid_out(fig)  # the margins the renderer sets
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=job.canvas.dpi, **_save_options("png", level))
    return buf.getvalue()


def rgba(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image.convert("RGBA"))


def seeded_job(name: str, dpr: float, seed: int = 7) -> RenderJob:
    spec = FIGURES.get(name)
    assert spec is not None
    params = spec.params.model_validate({"seed": seed} if spec.random else {})
    return job_for(spec, params, ImageOptions(dpr=dpr), MAX_PIXELS)


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        body = data[i + 8 : i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length : i + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        out.append((kind, body))
        i += 12 + length
    return out


@pytest.mark.parametrize("dpr", [1, 2, 3])
@pytest.mark.parametrize("name", [spec.name for spec in FIGURES])
def test_png_pixels_equal_matplotlibs_own_png(name: str, dpr: int) -> None:
    job = seeded_job(name, dpr)
    ours, theirs = rgba(encode(job)), rgba(reference_png(job))
    assert ours.shape == (job.canvas.height_px, job.canvas.width_px, 4)
    assert np.array_equal(ours, theirs)


def test_seed_figure_at_the_originals_size_is_pixel_identical() -> None:
    # The original app's figure at its own size: 4x3 inches at 300 dpi, 1200x900 pixels.
    job = seeded_job("normal", 3, seed=1)
    assert (job.canvas.width_px, job.canvas.height_px) == (1200, 900)
    assert np.array_equal(rgba(encode(job)), rgba(reference_png(job)))


@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_every_compression_level_gives_the_same_pixels(level: int) -> None:
    job = seeded_job("histogram", 1)
    assert np.array_equal(rgba(encode(job, level)), rgba(reference_png(job)))


def test_png_is_well_formed_with_matplotlibs_metadata() -> None:
    job = seeded_job("normal", 2)
    data = encode(job)
    kinds = [kind for kind, _ in chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    image = Image.open(io.BytesIO(data))
    image.verify()
    image = Image.open(io.BytesIO(data))
    reference = Image.open(io.BytesIO(reference_png(job)))
    assert image.format == "PNG"
    assert image.info["Software"] == reference.info["Software"]
    assert image.info["dpi"] == pytest.approx(reference.info["dpi"])


def clear_background(fig: Figure) -> None:
    fig.patch.set_alpha(0.0)
    fig.add_subplot().plot([0, 1, 2], [2, 0, 1])


def test_opaque_figures_drop_the_alpha_channel_transparent_ones_keep_it() -> None:
    opaque = seeded_job("normal", 1)
    assert Image.open(io.BytesIO(encode(opaque))).mode == "RGB"

    job = RenderJob(Drawing(clear_background, ()), Canvas(200, 150, 100.0), "png", "t")
    data = encode(job)
    assert Image.open(io.BytesIO(data)).mode == "RGBA"
    pixels = rgba(data)
    assert pixels[..., 3].min() == 0  # the background really is transparent
    assert np.array_equal(pixels, rgba(reference_png(job)))


def test_png_is_not_larger_than_matplotlibs_at_the_same_level() -> None:
    job = seeded_job("normal", 3, seed=1)
    assert len(encode(job, 6)) <= len(reference_png(job, 6))


def render(name: str, fmt: str = "png", w: int = 400, h: int = 300, dpr: float = 1, **params):
    spec = FIGURES.get(name)
    job = job_for(
        spec, spec.params(**params), ImageOptions(format=fmt, w=w, h=h, dpr=dpr), MAX_PIXELS
    )
    return encode(job)


def pixels(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("name", [spec.name for spec in FIGURES])
def test_every_figure_renders_a_png_of_the_requested_size(name):
    image = pixels(
        render(name, w=320, h=240, dpr=2, **({"seed": 3} if FIGURES.get(name).random else {}))
    )
    assert image.format == "PNG"
    assert image.size == (640, 480)
    # Something was drawn: the image is not one flat colour.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


def test_seed_figure_is_400x300_and_two_unseeded_calls_differ():
    first, second = render("normal", mean=5, var=3), render("normal", mean=5, var=3)
    assert pixels(first).size == (400, 300)
    assert first != second


def test_seeded_calls_are_byte_identical_and_seeds_differ():
    assert render("normal", seed=7) == render("normal", seed=7)
    assert render("normal", seed=7) != render("normal", seed=8)


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_vector_formats_are_reproducible_with_a_seed(fmt):
    # No creation dates or random ids in the output.
    assert render("histogram", fmt=fmt, seed=5) == render("histogram", fmt=fmt, seed=5)


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("png", lambda d: pixels(d).format == "PNG" and pixels(d).size == (500, 250)),
        ("webp", lambda d: pixels(d).format == "WEBP" and pixels(d).size == (500, 250)),
        ("jpeg", lambda d: pixels(d).format == "JPEG" and pixels(d).size == (500, 250)),
        ("svg", lambda d: ET.fromstring(d).tag.endswith("svg")),
        ("pdf", lambda d: d.startswith(b"%PDF-")),
    ],
)
def test_formats_have_their_signature(fmt, check):
    assert check(render("waves", fmt=fmt, w=500, h=250))


def test_pixel_cap_lowers_the_density_before_drawing():
    canvas = canvas_for(ImageOptions(w=3000, h=3000, dpr=3), MAX_PIXELS)
    assert (canvas.width_px, canvas.height_px) == (2449, 2449)
    assert canvas_for(ImageOptions(w=400, h=300, dpi=300), MAX_PIXELS).width_px == 1200


def test_dpi_is_used_when_dpr_is_given_too():
    canvas = canvas_for(ImageOptions(w=400, h=300, dpr=2, dpi=150), MAX_PIXELS)
    assert (canvas.width_px, canvas.height_px, canvas.dpi) == (600, 450, 150)
