"""The figure module and page of the README and of docs/figures.md, written into a folder of
their own exactly as the text gives them, served with the guide's command, and looked at in a
real browser: every figure shows, a figure asked for at w=600 in a grid keeps its width, and
nothing is wider than a phone."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from tests.support.browser import ALL_IMAGES_LOADED
from tests.support.html import image_urls
from tests.support.live import ROOT, live_server

pytestmark = [pytest.mark.live, pytest.mark.browser]
GUIDE = ROOT / "docs" / "figures.md"
README = ROOT / "README.md"
# The first line of a block names its file: "# name.py ..." or "{# pages/name.html ... #}".
_NAMED = re.compile(r"^(?:# |\{# )(?P<name>[\w/]+\.(?:py|html))\b")


def named_blocks(markdown: Path) -> dict[str, str]:
    """The code blocks of a Markdown file whose first line names a file, by that name."""
    out = {}
    for block in re.findall(r"```(?:python|jinja)\n(.*?)```", markdown.read_text(), re.S):
        first = _NAMED.match(block)
        if first is not None:
            out[first["name"]] = block
    return out


def guide_command() -> str:
    """The command of the guide's "The loop", as one shell line."""
    text = GUIDE.read_text()
    section = text[text.index("## The loop") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    (line,) = [x for x in block.group(1).splitlines() if x and not x.startswith("#")]
    return line


def fetch(url: str, accept: str = "*/*") -> tuple[int, str, bytes]:
    with urlopen(Request(url, headers={"Accept": accept}), timeout=30) as resp:
        return resp.status, resp.headers.get_content_type(), resp.read()


def test_a_module_and_page_written_from_the_docs_alone_are_served(
    tmp_path: Path, browser, artifacts: Path
) -> None:
    files = {**named_blocks(README), **named_blocks(GUIDE)}
    assert {"myfigures.py", "pages/mine.html", "mywaves.py", "pages/waves.html"} <= set(files)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    command = guide_command()
    assert "FIGSERVE_FIGURES=mywaves " in command and "127.0.0.1:8001" in command
    shell = (
        command.replace("FIGSERVE_FIGURES=mywaves ", "FIGSERVE_FIGURES=mywaves,myfigures ")
        .replace("127.0.0.1:8001", "127.0.0.1:{port}")
        .replace("hypercorn ", f"{sys.executable} -m hypercorn ", 1)
    )
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path / "jobs")}
    with live_server(shell=shell, workers=1, env=env, cwd=tmp_path) as server:
        catalog = json.loads(fetch(f"{server.url}/api/figures")[2])
        assert {"wave", "noisy_wave"} <= {f["name"] for f in catalog["figures"]}
        for page in ("/pages/mine", "/pages/waves"):
            status, kind, body = fetch(server.url + page, "text/html")
            assert (status, kind) == (200, "text/html")
            for url in image_urls(body.decode()):
                status, kind, _ = fetch(server.url + url.replace("&amp;", "&"), "image/*")
                assert status == 200 and kind in {"image/png", "image/webp"}, url
        for width in (1280, 390):
            phone = width < 500
            context = browser.new_context(
                viewport={"width": width, "height": 900},
                device_scale_factor=2 if phone else 1,
                is_mobile=phone,
            )
            page = context.new_page()
            for path in ("/pages/mine", "/pages/waves"):
                page.goto(server.url + path, wait_until="load")
                assert page.evaluate(ALL_IMAGES_LOADED)
                assert page.evaluate("() => document.documentElement.scrollWidth") <= width
                sources = page.eval_on_selector_all("img", "i => i.map(x => x.currentSrc)")
                assert all(".webp?" in s for s in sources), sources  # the smaller file
                # The figure asked for at w=600 keeps its width where there is room, and is
                # scaled to the screen only where there is not.
                wide = page.locator("img[width='600']")
                if wide.count():
                    shown = wide.first.evaluate("i => i.getBoundingClientRect().width")
                    assert shown == 600 if not phone else 300 < shown < width
                name = path.rsplit("/", 1)[1]
                page.screenshot(path=artifacts / f"guide_{name}_{width}.png", full_page=True)
            context.close()
