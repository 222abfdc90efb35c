"""A figure edited under ``--reload`` shows on the next page reload in a real browser.

The user's own figure module and page are served by a real Hypercorn with ``--reload``; headless
Chromium opens the page, the module is edited (another colour), and F5 shows the new colour in
both kinds of image URL: the version-pinned one the ``figure()`` helper writes and a plain one
written by hand. The plain URL's ETag changes with the edit."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.support.browser import ALL_IMAGES_LOADED
from tests.support.live import ROOT, live_server
from tests.support.waiting import until_sync

pytestmark = [pytest.mark.live, pytest.mark.browser]

MODULE = """
    from matplotlib.figure import Figure

    from figserve import FIGURES, FigureParams


    class SwatchParams(FigureParams):
        pass


    @FIGURES.figure("swatch", title="Swatch", description="One colour.", params=SwatchParams)
    def swatch(fig: Figure, p: SwatchParams) -> None:
        fig.patch.set_facecolor("{colour}")
"""
PAGE = """
    {% extends "base.html" %}
    {% block content %}
    {{ figure("swatch", w=120, h=90, alt="pinned") }}
    <img id="plain" src="/figures/swatch.png?w=120&h=90" width="120" height="90" alt="plain">
    {% endblock %}
"""
# The colour of one pixel of each image, as the page shows it.
PIXELS = """() => Array.from(document.images).map(img => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(3, 3, 1, 1).data.slice(0, 3));
})"""


def _colours(pixels: list[list[int]]) -> list[str]:
    """Each pixel named, allowing for WebP's lossy coding (the figure helper offers WebP)."""
    names = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    return [
        next((n for n, rgb in names.items() if max(map(abs, map(int.__sub__, p, rgb))) <= 8), "?")
        for p in pixels
    ]


def _write(module: Path, colour: str) -> None:
    before = module.stat().st_mtime_ns if module.exists() else 0
    module.write_text(textwrap.dedent(MODULE.format(colour=colour)))
    if before:
        # A later modification time, even on a file system of coarse timestamps.
        later = before + 2_000_000_000
        os.utime(module, ns=(later, later))


def test_an_edited_figure_shows_on_reload(tmp_path: Path, browser, artifacts: Path) -> None:
    module = tmp_path / "swatchmod.py"
    _write(module, "#ff0000")
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "swatch.html").write_text(textwrap.dedent(PAGE))
    env = {
        "FIGSERVE_FIGURES": "swatchmod",
        "FIGSERVE_PAGES": str(tmp_path / "pages"),
        "FIGSERVE_JOBS_DIR": str(tmp_path / "jobs"),
        "FIGSERVE_WARM_UP": "false",
    }
    shell = (
        f"{sys.executable} -m hypercorn --config {ROOT / 'hypercorn.toml'} --reload "
        "--bind 127.0.0.1:{port} 'figserve.app:create_app()'"
    )
    with live_server(shell=shell, workers=1, env=env, cwd=tmp_path) as server:
        plain = f"{server.url}/figures/swatch.png?w=120&h=90"
        etag = httpx.get(plain, timeout=30).headers["ETag"]
        context = browser.new_context(viewport={"width": 600, "height": 400})
        page = context.new_page()
        page.goto(f"{server.url}/pages/swatch", wait_until="load")
        assert page.evaluate(ALL_IMAGES_LOADED)
        assert _colours(page.evaluate(PIXELS)) == ["red", "red"]
        pinned = page.eval_on_selector("img[alt=pinned]", "img => img.src")
        assert "_v=" in pinned

        _write(module, "#0000ff")
        # The master checks its modules' files every second and restarts the worker.
        server.wait_for("Running on", count=2, timeout=60)
        until_sync(lambda: _status(f"{server.url}/readyz") == 200, "the new worker to be ready", 30)
        edited = httpx.get(plain, timeout=30, headers={"If-None-Match": etag})
        assert edited.status_code == 200 and edited.headers["ETag"] != etag

        page.reload(wait_until="load")  # F5
        assert page.evaluate(ALL_IMAGES_LOADED)
        assert _colours(page.evaluate(PIXELS)) == ["blue", "blue"]
        assert page.eval_on_selector("img[alt=pinned]", "img => img.src") != pinned
        page.screenshot(path=artifacts / "reload_edited_figure.png")
        context.close()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0
