"""The README's "Live figures of your data", run as written: the dashboard of a SQLite database
that a script fills updates by itself in a real browser, one render per new version."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.request import urlopen

import pytest
from PIL import ImageChops
from playwright.sync_api import Browser

from tests.support.html import parse
from tests.support.live import ROOT, live_server
from tests.support.prometheus import metric
from tests.support.waiting import until_sync
from tests.web.test_live_browser import WATCH, picture, pins, shown

pytestmark = [pytest.mark.live, pytest.mark.browser]
SECTION = "## Live figures of your data"


def readme_script() -> str:
    """The shell block of the section, as a script (one command a line)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return block.group(1)


def test_the_readme_dashboard_follows_its_data(tmp_path: Path, browser: Browser, artifacts):
    script = readme_script()
    assert "127.0.0.1:8002" in script and "feed.py &" in script
    # A copy of the example, so its database is the test's own; the checkout's environment.
    shutil.copytree(ROOT / "examples" / "live", tmp_path / "examples" / "live")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path / "jobs")}
    shell = script.replace("127.0.0.1:8002", "127.0.0.1:{port}")
    with live_server(shell=shell, workers=1, env=env, cwd=tmp_path) as server:
        with urlopen(f"{server.url}/pages/dashboard", timeout=30) as r:
            images = parse(r.read().decode()).images
        assert [i["src"].split("?")[0] for i in images] == [
            "/figures/revenue.png",
            "/figures/regions.png",
            "/figures/order_sizes.png",
        ]
        assert all("data-live" in i for i in images)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.add_init_script(WATCH)
        page.goto(f"{server.url}/pages/dashboard", wait_until="load")
        until_sync(lambda: all(pins(page)) and shown(page), "pinned images", 30)
        first, before = picture(page, "img[data-live]"), pins(page)
        page.screenshot(path=artifacts / "live_dashboard_before.png")
        # The feed adds an order a second: every figure changes by itself, more than once.
        for _ in range(2):
            until_sync(
                lambda b=before: (
                    all(x != y for x, y in zip(pins(page), b, strict=True)) and shown(page)
                ),
                "the dashboard's next version",
                30,
            )
            before = pins(page)
        page.screenshot(path=artifacts / "live_dashboard_after.png")
        assert ImageChops.difference(first, picture(page, "img[data-live]")).getbbox()
        assert sum(page.evaluate("window.__shifts")) == 0
        with urlopen(f"{server.url}/metrics", timeout=10) as r:
            text = r.read().decode()
        # Each version of a figure was drawn once, whoever asked first (the render ahead of
        # the viewers, or a viewer whose image had meanwhile been overtaken by newer data).
        # (A page may also catch up when its stream opens, without an announcement.)
        versions = metric(text, "figserve_version_changes_total", figure="revenue")
        told = metric(text, "figserve_live_changes_total", figure="revenue")
        drawn = metric(text, "figserve_renders_started_total", figure="revenue")
        assert told >= 1 and drawn <= versions + 1, (versions, told, drawn)
        context.close()
