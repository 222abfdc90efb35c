"""Figure functions and encoding, synchronously: no app, no HTTP."""

from __future__ import annotations

import ast
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from src.figures import FIGURES, Registry, SeededParams
from src.figures.registry import FigureSpec
from src.render import ImageOptions, LimitExceeded, canvas_for, encode, job_for

ROOT = Path(__file__).resolve().parent.parent
MAX_PIXELS = 6_000_000


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


def test_pixel_cap_is_enforced_before_drawing():
    with pytest.raises(LimitExceeded) as err:
        canvas_for(ImageOptions(w=3000, h=3000, dpr=3), MAX_PIXELS)
    assert err.value.param == "w"
    assert canvas_for(ImageOptions(w=400, h=300, dpi=300), MAX_PIXELS).width_px == 1200


def test_dpr_and_dpi_together_are_refused():
    with pytest.raises(LimitExceeded):
        canvas_for(ImageOptions(w=400, h=300, dpr=2, dpi=200), MAX_PIXELS)


def test_user_text_is_not_parsed_as_math():
    # A malformed math expression would raise if mathtext parsed it.
    data = render("histogram", title=r"$\frac{", seed=1)
    assert pixels(data).size == (400, 300)


def test_registry_rejects_reserved_and_duplicate_names():
    registry = Registry()

    class Bad(SeededParams):
        w: int = 1

    spec = FIGURES.get("normal")
    with pytest.raises(ValueError, match="reserved"):
        registry.add(FigureSpec("bad", "t", "d", Bad, spec.draw, "alt"))
    registry.add(spec)
    with pytest.raises(ValueError, match="already"):
        registry.add(spec)


def test_src_never_imports_pyplot():
    offenders = []
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n in {"matplotlib.pyplot", "pylab"} for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
