"""Live pages in real headless Chromium: images that follow their data without a flash or a
layout shift, stale data marked, seven tabs on one stream, and a figure edited under --reload."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from urllib.request import urlopen

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import Browser, BrowserContext, Page

from tests.support.livepage import MeterFolder
from tests.support.prometheus import metric
from tests.support.waiting import until_sync

pytestmark = [pytest.mark.live, pytest.mark.browser]

LIVE = "img[data-live]"
# Before any script of the page: every layout shift, and the state of each live image at the
# moment its URL changes (complete at once: it was loaded ahead, so no frame shows it blank).
WATCH = """
window.__shifts = [];
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.__shifts.push(e.value);
}).observe({type: "layout-shift", buffered: true});
window.__swaps = [];
new MutationObserver(records => {
  for (const r of records) {
    const img = r.target;
    if (img.matches && img.matches("img[data-live]") && r.attributeName === "src") {
      window.__swaps.push({complete: img.complete, width: img.naturalWidth,
                           box: [img.offsetWidth, img.offsetHeight]});
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["src"]});
"""


def live_streams(base: str) -> float:
    with urlopen(f"{base}/metrics", timeout=10) as r:
        return metric(r.read().decode(), "figserve_live_streams")


def pins(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        LIVE, "imgs => imgs.map(i => new URL(i.currentSrc).searchParams.get('_v'))"
    )


def shown(page: Page) -> bool:
    return page.eval_on_selector_all(LIVE, "imgs => imgs.every(i => i.complete && i.naturalWidth)")


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.add_init_script(WATCH)
    page.goto(url, wait_until="load")
    return page


def picture(page: Page, selector: str) -> Image.Image:
    return Image.open(io.BytesIO(page.locator(selector).first.screenshot())).convert("RGB")


@pytest.fixture
def meter(tmp_path: Path):
    folder = MeterFolder(tmp_path)
    server = folder.server().start()
    yield folder, server
    server.stop()


def wait_pins(page: Page, before: list[str], what: str, timeout: float = 30) -> list[str]:
    until_sync(
        lambda: all(a != b for a, b in zip(pins(page), before, strict=True)) and shown(page),
        what,
        timeout,
    )
    return pins(page)


def test_a_live_page_follows_its_data_without_flash_or_shift(browser: Browser, meter, artifacts):
    folder, server = meter
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = open_page(context, f"{server.url}/pages/meter")
    still = page.locator("img:not([data-live])").get_attribute("src")
    # The first load may come before the data's first check: its images then get their pins
    # from the stream.
    until_sync(lambda: all(pins(page)) and shown(page), "pinned images", 30)
    until_sync(lambda: live_streams(server.url) == 1, "the page's stream")
    before = pins(page)
    first = picture(page, LIVE)
    page.screenshot(path=artifacts / "live_meter_before.png")
    for value in (72, 31):
        folder.set(value)
        before = wait_pins(page, before, f"the images of {value}")
        assert page.evaluate(f"document.querySelector('{LIVE}').alt") == (
            "The number in the file, as a bar"
        )
    page.screenshot(path=artifacts / "live_meter_after.png")
    assert ImageChops.difference(first, picture(page, LIVE)).getbbox() is not None
    # A pin names the code and the data, the same for every parameter; each image kept its
    # size and density.
    assert len(set(before)) == 1
    sizes = page.eval_on_selector_all(
        LIVE, "imgs => imgs.map(i => [i.naturalWidth, +i.getAttribute('width')])"
    )
    assert sizes == [[400, 400], [400, 400], [300, 300]]
    assert page.locator("img:not([data-live])").get_attribute("src") == still
    swaps = page.evaluate("window.__swaps")
    assert len(swaps) >= 6 and all(s["complete"] and s["width"] for s in swaps), swaps
    assert sum(page.evaluate("window.__shifts")) == 0
    context.close()


def test_data_that_cannot_be_read_is_marked_then_unmarked(browser: Browser, meter, artifacts):
    folder, server = meter
    context = browser.new_context()
    page = open_page(context, f"{server.url}/pages/meter")
    until_sync(lambda: all(pins(page)) and shown(page), "pinned images", 30)
    first = page.locator(LIVE).first
    base = first.get_attribute("alt")
    folder.data.unlink()  # the version function now fails: the last good image stays
    until_sync(lambda: first.get_attribute("data-live-stale") is not None, "the stale mark", 30)
    assert first.get_attribute("alt").startswith(base + " (not up to date")
    assert shown(page)
    page.screenshot(path=artifacts / "live_meter_stale.png")
    folder.set(12)
    until_sync(lambda: first.get_attribute("data-live-stale") is None, "the mark gone", 30)
    assert first.get_attribute("alt") == base
    context.close()


def test_seven_tabs_of_one_browser_share_one_stream(browser: Browser, meter):
    folder, server = meter
    context = browser.new_context()
    pages = [open_page(context, f"{server.url}/pages/meter") for _ in range(7)]
    for page in pages:
        until_sync(lambda p=page: all(pins(p)) and shown(p), "pinned images", 30)
    until_sync(lambda: live_streams(server.url) == 1, "one stream for the seven tabs")
    before = [pins(p) for p in pages]
    folder.set(66)
    t0 = time.monotonic()
    for page, old in zip(pages, before, strict=True):
        wait_pins(page, old, "every tab's images")
    assert time.monotonic() - t0 < 30
    # The tab that holds the stream goes: another one takes it over.
    pages[0].close()
    before = [pins(p) for p in pages[1:]]
    folder.set(44)
    for page, old in zip(pages[1:], before, strict=True):
        wait_pins(page, old, "every remaining tab's images")
    assert live_streams(server.url) == 1
    # Another browser has a stream of its own.
    other = browser.new_context()
    open_page(other, f"{server.url}/pages/meter")
    until_sync(lambda: live_streams(server.url) == 2, "a second browser's stream")
    other.close()
    context.close()


def test_a_figure_edited_under_reload_reaches_an_open_page(browser: Browser, tmp_path: Path):
    folder = MeterFolder(tmp_path)
    server = folder.server(args=("--reload",)).start()
    try:
        context = browser.new_context()
        page = open_page(context, f"{server.url}/pages/meter")
        until_sync(lambda: all(pins(page)) and shown(page), "pinned images", 30)
        before, first = pins(page), picture(page, LIVE)
        # The bars turn black: a new code version, so every pin changes, the data's too.
        folder.edit_module(
            "ax.barh([0], [value], color=p.colour)", 'ax.barh([0], [value], color="k")'
        )
        server.wait_for("Running on", count=2, timeout=60)  # the worker was restarted
        wait_pins(page, before, "the images of the edited figure", timeout=60)
        assert ImageChops.difference(first, picture(page, LIVE)).getbbox() is not None
        assert json.loads(json.dumps(page.evaluate("window.__shifts"))) in ([], [0])
        context.close()
    finally:
        server.stop()


def test_a_tab_that_joins_with_old_images_is_brought_up_to_date(browser: Browser, meter):
    """A tab opened on a page that shows older versions (a page kept by a cache) joins the tabs'
    shared stream without changing what it follows: it is told the current pins all the
    same."""
    _, server = meter
    context = browser.new_context()
    first = open_page(context, f"{server.url}/pages/meter")
    until_sync(lambda: all(pins(first)) and shown(first), "pinned images", 30)
    until_sync(lambda: live_streams(server.url) == 1, "the stream")
    current = pins(first)

    def old_page(route) -> None:
        page = route.fetch()
        body = page.text()
        for pin in set(current):
            body = body.replace(f"_v={pin}", "_v=0000000000000000")
        route.fulfill(response=page, body=body)

    late = context.new_page()
    late.route(f"{server.url}/pages/meter", old_page)
    late.goto(f"{server.url}/pages/meter", wait_until="load")
    until_sync(lambda: pins(late) == current and shown(late), "the current images", 30)
    assert live_streams(server.url) == 1
    context.close()
