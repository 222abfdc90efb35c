"""The README's "Your own figures in five minutes", run as written, and what it promises:
a user's figure module and page served by a real server, edits picked up by ``--reload``, and
a broken module stopping the start with a message that names it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from tests.conftest import decode
from tests.support.browser import ALL_IMAGES_LOADED
from tests.support.html import image_urls, parse
from tests.support.live import ROOT, live_server
from tests.support.usercode import spiral_module
from tests.support.waiting import until_sync

pytestmark = pytest.mark.live
SECTION = "## Your own figures in five minutes"


def readme_commands() -> str:
    """The shell block of the section, as one command line."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    return " && ".join(lines)


def fetch(url: str, accept: str = "*/*") -> tuple[int, str, bytes]:
    with urlopen(Request(url, headers={"Accept": accept}), timeout=30) as resp:
        return resp.status, resp.headers.get_content_type(), resp.read()


@pytest.mark.browser
def test_the_readme_commands_serve_the_example_figure_and_page(
    tmp_path: Path, browser, artifacts: Path
) -> None:
    commands = readme_commands()
    assert "127.0.0.1:8001" in commands
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path / "jobs")}
    shell = commands.replace("127.0.0.1:8001", "127.0.0.1:{port}")
    with live_server(shell=shell, workers=1, env=env) as server:
        status, kind, body = fetch(f"{server.url}/pages/spirals", "text/html")
        assert (status, kind) == (200, "text/html")
        html = body.decode()
        images = parse(html).images
        assert len(images) == 4 and images[0]["fetchpriority"] == "high"
        assert images[0]["src"].startswith("/figures/spiral.png?")
        # Every image of the page, at every density, decodes at its size.
        for url in image_urls(html):
            status, kind, data = fetch(server.url + url.replace("&amp;", "&"), "image/*")
            webp = ".webp?" in url  # the WebP beside each PNG
            assert (status, kind) == (200, "image/webp" if webp else "image/png"), url
            dpr = float(re.search(r"dpr=([0-9.]+)", url).group(1)) if "dpr=" in url else 1
            assert decode(data).size == (round(400 * dpr), round(300 * dpr))
        catalog = json.loads(fetch(f"{server.url}/api/figures")[2])
        assert "spiral" in [f["name"] for f in catalog["figures"]]
        document = json.loads(fetch(f"{server.url}/openapi.json")[2])
        assert "/figures/spiral.{fmt}" in document["paths"]
        gallery = fetch(f"{server.url}/", "text/html")[2].decode()
        assert 'id="spiral"' in gallery
        # In a browser, on a wide screen and a phone: every figure shows, nothing overflows.
        for width in (1280, 390):
            context = browser.new_context(
                viewport={"width": width, "height": 900},
                device_scale_factor=2 if width < 500 else 1,
            )
            page = context.new_page()
            page.goto(f"{server.url}/pages/spirals", wait_until="load")
            assert page.evaluate(ALL_IMAGES_LOADED)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
            page.screenshot(path=artifacts / f"user_page_{width}.png", full_page=True)
            context.close()


def test_reload_picks_up_an_edited_figure_module(tmp_path: Path) -> None:
    module = tmp_path / "mine.py"
    module.write_text(spiral_module("minespiral", title="First title"))
    env = {"FIGSERVE_FIGURES": "mine", "FIGSERVE_JOBS_DIR": str(tmp_path / "jobs")}
    app = "'figserve.app:create_app()'"
    shell = f"{sys.executable} -m hypercorn --reload --bind 127.0.0.1:{{port}} {app}"
    with live_server(shell=shell, workers=1, env=env, cwd=tmp_path) as server:

        def title() -> str:
            figures = json.loads(fetch(f"{server.url}/api/figures")[2])["figures"]
            return next(f["title"] for f in figures if f["name"] == "minespiral")

        assert title() == "First title"
        before = module.stat().st_mtime_ns
        module.write_text(spiral_module("minespiral", title="Second title"))
        # A later modification time, even on a file system of coarse timestamps.
        os.utime(module, ns=(before + 2_000_000_000, before + 2_000_000_000))
        # The master checks its modules' files every second and restarts the workers.
        server.wait_for("Running on", count=2, timeout=60)
        until_sync(lambda: _quietly(title) == "Second title", "the edited title", timeout=30)
        status, kind, _ = fetch(f"{server.url}/figures/minespiral.png?seed=1", "image/*")
        assert (status, kind) == (200, "image/png")


def _touch_later(path: Path, text: str) -> None:
    """Write ``text`` with a later modification time than before, even on a file system of
    coarse timestamps (the reloader compares them)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def _status(url: str, accept: str) -> tuple[int, str, str]:
    """Status, media type and text of an answer, errors included."""
    try:
        status, kind, body = fetch(url, accept)
    except HTTPError as exc:
        status, kind, body = exc.code, exc.headers.get_content_type(), exc.read()
    except OSError:
        return 0, "", ""  # between two workers
    return status, kind, body.decode(errors="replace")


def _reload_command(folder: Path) -> str:
    """The README's command, run in a copy of examples/ (the test edits its files)."""
    commands = readme_commands()
    assert commands.startswith("cd examples && ") and "--reload" in commands
    command = commands.removeprefix("cd examples && ").replace("127.0.0.1:8001", "127.0.0.1:{port}")
    return command.replace("../.venv/bin/hypercorn", f"{sys.executable} -m hypercorn")


def test_under_reload_a_broken_module_shows_its_error_and_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", folder)
    module = folder / "spirals.py"
    good = module.read_text()
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path / "jobs")}
    with live_server(shell=_reload_command(folder), workers=1, env=env, cwd=folder) as server:
        page, image = f"{server.url}/pages/spirals", f"{server.url}/figures/spiral.png?seed=1"
        assert _status(page, "text/html")[0] == 200
        # A save with a typo: the server stays up and every page names the file and the line.
        broken = good.replace("def spiral(fig: Figure, p: SpiralParams) -> None:", "def spiral(")
        line = 1 + good.splitlines().index("def spiral(fig: Figure, p: SpiralParams) -> None:")
        _touch_later(module, broken)
        until_sync(lambda: _status(page, "text/html")[0] == 503, "the error page", timeout=60)
        status, kind, html = _status(page, "text/html")
        assert kind == "text/html" and f"{module}, line {line}" in html
        status, kind, svg = _status(image, "image/webp,image/svg+xml,image/*,*/*;q=0.8")
        assert (status, kind) == (503, "image/svg+xml") and f"line {line}" in svg
        # The fix is picked up by itself: nothing restarted by hand.
        _touch_later(module, good)
        until_sync(lambda: _status(page, "text/html")[0] == 200, "the page again", timeout=60)
        assert _status(image, "image/png")[:2] == (200, "image/png")


def test_a_server_started_with_a_broken_helper_recovers_when_it_is_fixed(tmp_path: Path) -> None:
    # The module imports a helper of the user's that has a syntax error: Hypercorn's master
    # never imported either file, yet both are watched.
    (tmp_path / "dash.py").write_text(spiral_module("dash") + "\nimport dashhelper\n")
    helper = tmp_path / "dashhelper.py"
    helper.write_text("SCALE = (\n")
    env = {"FIGSERVE_FIGURES": "dash", "FIGSERVE_JOBS_DIR": str(tmp_path / "jobs")}
    app = "'figserve.app:create_app()'"
    shell = f"{sys.executable} -m hypercorn --reload --bind 127.0.0.1:{{port}} {app}"
    with live_server(shell=shell, workers=1, env=env, cwd=tmp_path) as server:
        catalog = f"{server.url}/api/figures"
        status, kind, text = _status(catalog, "application/json")
        assert (status, kind) == (503, "application/problem+json")
        assert f"{helper}, line 1 (SCALE = ()" in json.loads(text)["detail"]
        _touch_later(helper, "SCALE = 2\n")
        until_sync(lambda: _status(catalog, "*/*")[0] == 200, "the catalog", timeout=60)
        assert "dash" in _status(catalog, "*/*")[2]
        # Edits go on being picked up: the module itself, which the master never imported.
        module = tmp_path / "dash.py"
        _touch_later(module, module.read_text().replace("My spiral", "Renamed"))
        until_sync(lambda: "Renamed" in _status(catalog, "*/*")[2], "the edit", timeout=60)


def _quietly(get):
    try:
        return get()
    except OSError:
        return None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import math\n\ndef broken(:\n", r"module 'bad' has a syntax error at .*bad\.py, line 3"),
        ("X = 1\nY = X / 0\n", r"module 'bad' failed while importing, at .*bad\.py, line 2"),
        (None, r"no module 'bad' in the current directory"),
    ],
)
def test_a_broken_module_stops_the_start_naming_it(
    tmp_path: Path, source: str | None, expected: str
) -> None:
    if source is not None:
        (tmp_path / "bad.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "hypercorn", "--bind", "127.0.0.1:0", "figserve.app:create_app()"],
        cwd=tmp_path,
        env={**_env(), "FIGSERVE_FIGURES": "bad"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The worker fails to import the app and Hypercorn's master stops with it (its exit status
    # is 0 all the same: Hypercorn 0.18 loses the worker's status once it has reaped it). The
    # message is the last thing printed, with no traceback above it.
    assert "Running on" not in proc.stderr and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"figserve: the start failed: FIGSERVE_FIGURES: {expected}.*", last), (
        proc.stderr
    )


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FIGSERVE_")}
