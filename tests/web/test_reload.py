"""A figure module that fails under a reloader: how the app knows it runs under one, what the
server answers meanwhile, and which files it watches (the live loop is in
tests/test_examples_live.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypercorn.utils import files_to_watch

from figserve.app import create_app
from figserve.figures.loading import FigureModuleError, load_figure_modules
from figserve.web.reload import under_reloader, watch_in_reloader
from tests.support.usercode import UserFolder, spiral_module
from tests.web.test_errors import BROWSER_IMG_ACCEPT, BROWSER_PAGE_ACCEPT

HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))
MODULE_MAIN = str(Path("/lib/python3/site-packages/hypercorn/__main__.py"))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([HYPERCORN, "--reload", "--bind", "127.0.0.1:8001", "figserve.app:create_app()"], True),
        ([MODULE_MAIN, "--reload", "src.app:app"], True),  # python -m hypercorn
        ([HYPERCORN, "--config", "hypercorn.toml", "src.app:app"], False),
        ([HYPERCORN, "src.app:app"], False),
        (["/usr/bin/pytest", "--reload"], False),  # another program's flag
        ([], False),
    ],
)
def test_the_reloader_is_read_from_hypercorns_command_line(argv, expected) -> None:
    assert under_reloader(None, argv) is expected
    # The setting, when given, decides.
    assert under_reloader(True, argv) is True
    assert under_reloader(False, argv) is False


def test_a_config_file_that_turns_the_reloader_on_counts(tmp_path: Path) -> None:
    on = tmp_path / "on.toml"
    on.write_text('bind = ["127.0.0.1:8000"]\nuse_reloader = true\n')
    off = tmp_path / "off.toml"
    off.write_text("use_reloader = false\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("use_reloader = [\n")
    assert under_reloader(None, [HYPERCORN, "--config", str(on), "a:b"])
    assert under_reloader(None, [HYPERCORN, f"--config={on}", "a:b"])
    assert not under_reloader(None, [HYPERCORN, "-c", str(off), "a:b"])
    assert not under_reloader(None, [HYPERCORN, "-c", str(broken), "a:b"])
    assert not under_reloader(None, [HYPERCORN, "-c", str(tmp_path / "none.toml"), "a:b"])


def _error(user_folder: UserFolder, name: str) -> FigureModuleError:
    with pytest.raises(FigureModuleError) as caught:
        load_figure_modules(name)
    return caught.value


def test_a_failure_names_the_files_a_fix_would_touch(user_folder: UserFolder) -> None:
    own = user_folder.write("ownsyntax.py", "def f(:\n")
    assert _error(user_folder, "ownsyntax").files == (own,)
    mine = user_folder.write("usesbroken.py", "import brokenhelper\n")
    helper = user_folder.write("brokenhelper.py", "X = (\n")
    error = _error(user_folder, "usesbroken")
    assert error.files[:2] == (mine, helper)
    assert re.search(
        r"failed while importing: a syntax error at .*brokenhelper\.py, line 1", str(error)
    )
    raising = user_folder.write("raisinghelper.py", "X = 1 / 0\n")
    caller = user_folder.write("callsraising.py", "import raisinghelper\n")
    assert set(_error(user_folder, "callsraising").files) == {caller, raising}
    # A module that is not there yet is looked for in the current folders: where it will be.
    missing = _error(user_folder, "notwrittenyet")
    assert user_folder.root / "notwrittenyet.py" in missing.files


def test_the_reloader_watches_the_files_of_a_failure(tmp_path: Path) -> None:
    there = tmp_path / "there.py"
    there.write_text("X = (\n")
    watch_in_reloader([there, tmp_path / "missing.py"])
    try:
        watched = files_to_watch()  # what Hypercorn's reloader looks at
        assert there in watched
        assert tmp_path / "missing.py" not in watched  # a missing file would read as changed
    finally:
        for key, module in list(sys.modules.items()):
            if getattr(module, "__file__", None) == str(there):
                del sys.modules[key]


@pytest.fixture
def broken_module(user_folder: UserFolder) -> Path:
    return user_folder.write("halfwritten.py", spiral_module("halfwritten") + "\ndef more(:\n")


def test_without_a_reloader_a_broken_module_stops_the_start(broken_module: Path) -> None:
    with pytest.raises(FigureModuleError, match=r"halfwritten\.py, line [0-9]+"):
        create_app({"warm_up": False, "figures": "halfwritten", "reload": False})


async def test_under_a_reloader_every_route_shows_the_error(broken_module: Path) -> None:
    app = create_app({"warm_up": False, "figures": "halfwritten", "reload": True})
    line = len(broken_module.read_text().splitlines())
    where = f"{broken_module}, line {line}"
    async with app.test_app():
        client = app.test_client()
        # A browser's page: the error, the file and the line, and it looks again by itself.
        page = await client.get("/pages/anything", headers={"Accept": BROWSER_PAGE_ACCEPT})
        assert (page.status_code, page.mimetype) == (503, "text/html")
        html = await page.get_data(as_text=True)
        assert where in html and "def more(:): invalid syntax" in html
        assert '<meta http-equiv="refresh"' in html and 'content="noindex"' in html
        assert "style-src 'self' 'sha256-" in page.headers["Content-Security-Policy"]
        # An <img>: the error as an image at the figure's size.
        image = await client.get(
            "/figures/halfwritten.png?w=320&h=200", headers={"Accept": BROWSER_IMG_ACCEPT}
        )
        assert (image.status_code, image.mimetype) == (503, "image/svg+xml")
        svg = await image.get_data(as_text=True)
        assert 'width="320" height="200"' in svg and "halfwritten.py" in svg
        # A program: problem+json.
        api = await client.post("/api/render", json={"figure": "halfwritten"})
        assert (api.status_code, api.mimetype) == (503, "application/problem+json")
        body = await api.get_json()
        assert where in body["detail"] and api.headers["Retry-After"]
        assert (await client.get("/healthz")).status_code == 200
        # Nothing runs meanwhile: no renders, no jobs.
        assert "figserve" not in app.extensions
