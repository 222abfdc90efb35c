"""Pages in real headless Chromium (Debian's), driven by Playwright (issues 2 and 3)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page

from tests.support.browser import ALL_IMAGES_LOADED

pytestmark = [pytest.mark.live, pytest.mark.browser]
CUT_BLOCKS = """() => Array.from(document.querySelectorAll('pre'))
    .filter(p => p.scrollWidth > p.clientWidth).map(p => p.textContent.slice(0, 40))"""
HEADER_BACKGROUND = "() => getComputedStyle(document.querySelector('header.site')).backgroundColor"


def open_page(browser: Browser, url: str, **context) -> Page:
    page = browser.new_context(**context).new_page()
    page.goto(url, wait_until="load")  # "load" waits for every image
    return page


def test_normal_page_shows_every_image(browser, server, artifacts):
    page = open_page(browser, f"{server.url}/normal/5_3", viewport={"width": 1280, "height": 1000})
    assert page.title() == "random normal — 5, 3"
    count = page.eval_on_selector_all("img", "imgs => imgs.length")
    assert count >= 4
    assert page.evaluate(ALL_IMAGES_LOADED)
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths == [400] * count
    page.screenshot(path=artifacts / "normal_5_3.png", full_page=True)


def test_retina_screen_gets_the_2x_image(browser, server, artifacts):
    page = open_page(
        browser,
        f"{server.url}/normal/5_3",
        device_scale_factor=2,
        viewport={"width": 900, "height": 700},
    )
    assert page.evaluate(ALL_IMAGES_LOADED)
    sources = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.currentSrc)")
    assert all(src.endswith("dpr=2") for src in sources)
    # naturalWidth is in CSS pixels (800 px at density 2); load the file alone to see its pixels.
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert set(widths) == {400}
    pixels = page.evaluate(
        """src => new Promise(done => {
            const i = new Image(); i.onload = () => done(i.naturalWidth); i.src = src;
        })""",
        sources[0],
    )
    assert pixels == 800
    page.screenshot(path=artifacts / "normal_5_3_2x.png")


def test_gallery_form_draws_the_figure(browser, server, artifacts):
    page = open_page(browser, f"{server.url}/", viewport={"width": 1280, "height": 900})
    assert page.evaluate(ALL_IMAGES_LOADED)
    page.screenshot(path=artifacts / "gallery.png", full_page=True)
    card = page.locator("#histogram")
    card.locator("summary").click()
    card.locator("input[name=bins]").fill("12")
    card.locator("input[name=seed]").fill("5")
    card.locator("input[name=title]").fill("Twelve bins")
    card.locator("select[name=format]").select_option("png")
    with page.expect_navigation(wait_until="load"):
        card.locator("button[type=submit]").click()
    assert "/gallery/histogram?" in page.url and "bins=12" in page.url
    image = page.locator(".result img")
    assert image.evaluate("i => i.complete && i.naturalWidth > 0")
    assert "seed=5" in image.get_attribute("src")
    # The browser took the WebP beside the PNG; the card is as wide as the image it shows.
    assert ".webp?" in image.evaluate("i => i.currentSrc")
    card = page.locator(".result").evaluate("c => c.clientWidth - 32")  # less its padding
    assert image.evaluate("i => i.clientWidth") == 400 == card
    # The page shows the version it was drawn with; the permalink shows the figure as it is
    # when opened (see tests/live/test_versions.py).
    permalink = page.locator(".permalink a").get_attribute("href")
    assert re.fullmatch(re.escape(permalink) + r"&_v=[0-9a-f]{16}", image.get_attribute("src"))
    page.screenshot(path=artifacts / "gallery_result.png", full_page=True)


def test_broken_figure_explains_itself(browser, server, artifacts):
    page = open_page(browser, f"{server.url}/gallery/normal?w=400")
    # An <img> pointing at a bad URL shows the error image, which still loads as an image.
    page.set_content(f'<img id="bad" src="{server.url}/fig/5_0" width="400" height="300">')
    page.wait_for_function("() => document.getElementById('bad').complete")
    assert page.evaluate("() => document.getElementById('bad').naturalWidth") == 400
    page.screenshot(path=artifacts / "error_image.png")


def test_phone_width_layout(browser, server, artifacts):
    page = open_page(
        browser,
        f"{server.url}/normal/5_3",
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
    )
    assert page.evaluate(ALL_IMAGES_LOADED)
    # Nothing wider than the screen: no horizontal scrolling.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=artifacts / "normal_phone.png")


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("gallery", "/"),
        ("figure", "/gallery/histogram?bins=12&seed=3&title=Twelve"),
        ("jobs", "/jobs"),
        ("docs", "/docs"),
        ("invalid", "/gallery/histogram?bins=0&colour=red"),
    ],
)
def test_pages_fit_the_screen(browser, server, artifacts, name: str, path: str, width: int):
    phone = width < 500
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
    )
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    # A report of this browser's own, so the list of reports has a row to lay out.
    created = page.request.post(
        f"{server.url}/jobs", data={"items": [{"figure": "waves"}], "output": "zip"}
    )
    assert created.status == 202
    page.goto(f"{server.url}{path}", wait_until="load")
    assert page.evaluate(ALL_IMAGES_LOADED)
    # Nothing wider than the screen: no sideways scrolling, no example cut off in its box.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    assert page.evaluate(CUT_BLOCKS) == []
    # The page's own stylesheet applies (its Content-Security-Policy allows it), and the
    # browser reports nothing wrong (a refused style or script would show here).
    assert page.evaluate(HEADER_BACKGROUND) == "rgb(255, 255, 255)"
    assert console == [] or name == "invalid", console
    page.screenshot(path=artifacts / f"{name}_{width}.png", full_page=True)
    if name == "invalid":
        summary = page.locator(".errors-summary").inner_text()
        assert "colour: unknown parameter; this figure takes seed, mean, std" in summary
        assert "bins: Input should be greater than or equal to 1" in summary
        marked = page.locator("[aria-invalid=true]")
        assert marked.count() == 1 and marked.get_attribute("name") == "bins"
    context.close()


def test_the_first_figure_comes_first_and_far_ones_wait(browser, server):
    page = open_page(browser, f"{server.url}/", viewport={"width": 1280, "height": 900})
    priorities = page.eval_on_selector_all(
        ".card img", "imgs => imgs.map(i => [i.fetchPriority, i.loading])"
    )
    # Chromium reads the attributes as the page gives them (loading "auto" is eager).
    assert priorities[0] == ["high", "auto"]
    assert all(p == ["auto", "auto"] for p in priorities[1:6])


@pytest.mark.parametrize(("w", "beside"), [(400, True), (800, True), (1100, False)])
def test_a_result_keeps_its_width_and_the_form_moves_below_when_needed(
    browser, server, w: int, beside: bool
):
    page = open_page(
        browser, f"{server.url}/gallery/waves?w={w}&h=300", viewport={"width": 1280, "height": 900}
    )
    image = page.locator(".result img")
    assert image.evaluate("i => i.clientWidth") == w  # never squeezed, text and all
    assert page.locator(".result").evaluate("c => c.clientWidth - 32") == w  # its card fits it
    card = page.locator(".result").bounding_box()
    form = page.locator("form.params").bounding_box()
    assert (form["y"] == card["y"]) is beside
    assert (form["y"] >= card["y"] + card["height"]) is not beside
