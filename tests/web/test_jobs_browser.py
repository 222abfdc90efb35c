"""Reports in headless Chromium (issue 5): gallery form → live progress bar → download link."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pypdf
import pytest
from playwright.sync_api import Browser, Page

from tests.support.live import LiveServer, live_server

pytestmark = [pytest.mark.live, pytest.mark.browser]

TIMEOUT_MS = 120_000
BAR_FULL_AND_LINK_SHOWN = """() => {
    const bar = document.getElementById("job-progress");
    return bar.max > 0 && bar.value === bar.max && !document.getElementById("job-result").hidden;
}"""
# Every value the progress bar takes, recorded as the page's script sets it.
RECORD_BAR = """() => {
    window.barValues = [];
    const record = () => {
        const bar = document.getElementById("job-progress");
        if (!bar) return;
        window.barValues.push(bar.value);
        new MutationObserver(() => window.barValues.push(bar.value))
            .observe(bar, {attributes: true, attributeFilter: ["value"]});
    };
    document.addEventListener("DOMContentLoaded", record);
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path_factory.mktemp("jobs"))}
    with live_server(workers=2, env=env) as srv:
        yield srv


def new_page(browser: Browser) -> tuple[Page, list[str]]:
    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, problems


def test_report_from_the_gallery_shows_progress_and_downloads(
    browser: Browser, server: LiveServer, artifacts: Path
):
    page, problems = new_page(browser)
    page.add_init_script(script=f"({RECORD_BAR})()")
    page.goto(f"{server.url}/#report", wait_until="load")
    form = page.locator("#report form")
    for name in ("normal", "timeseries", "waves"):
        form.locator(f"input[name=figure][value={name}]").uncheck()
    form.locator("input[name='copies.heatmap']").fill("30")
    form.locator("input[name='copies.histogram']").fill("30")
    histogram = form.locator("fieldset", has=page.locator("input[value=histogram]"))
    histogram.locator("summary").click()
    form.locator("input[name='histogram.seed']").fill("100")
    form.locator("input[name='w']").fill("640")
    form.locator("input[name='h']").fill("480")
    page.screenshot(path=artifacts / "jobs_form.png", full_page=True)

    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "/jobs/" in page.url
    first_state = page.locator("#job").get_attribute("data-state")
    assert first_state in {"queued", "running"}  # so the script, not the server, fills the bar
    page.wait_for_function("() => document.getElementById('job-progress').value > 0")
    page.screenshot(path=artifacts / "job_progress_running.png", full_page=True)

    page.wait_for_function(BAR_FULL_AND_LINK_SHOWN, timeout=TIMEOUT_MS)
    page.screenshot(path=artifacts / "job_progress_done.png", full_page=True)
    values = page.evaluate("window.barValues")
    assert values == sorted(values)  # only ever forward
    assert values[-1] == 60
    assert page.locator("#job-status").inner_text().startswith("Done: 60 of 60 (100%)")
    assert page.locator("#job-cancel").is_hidden()
    link = page.locator("#job-result")
    assert link.inner_text().startswith("Download the PDF (")

    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".pdf")
    pdf = pypdf.PdfReader(io.BytesIO(Path(download.path()).read_bytes()))
    assert len(pdf.pages) == 60
    assert problems == []


def test_cancel_button_stops_the_report(browser: Browser, server: LiveServer, artifacts: Path):
    many = [{"figure": "heatmap", "params": {"seed": i}} for i in range(300)]
    resp = httpx.post(f"{server.url}/jobs", json={"items": many}, timeout=30)
    assert resp.status_code == 202
    page, problems = new_page(browser)
    # The job is the API client's: the browser gets its owner cookie, as if it had made it.
    token = resp.cookies["figserve_owner"]
    page.context.add_cookies(
        [{"name": "figserve_owner", "value": token, "url": f"{server.url}/jobs"}]
    )
    page.goto(server.url + resp.headers["Location"], wait_until="load")
    page.locator("#job-cancel").click()
    page.wait_for_function(
        "() => document.getElementById('job').dataset.state === 'cancelled'", timeout=TIMEOUT_MS
    )
    assert page.locator("#job-status").inner_text().startswith("Cancelled after ")
    assert page.locator("#job-cancel").is_hidden()
    assert page.locator("#job-result").is_hidden()
    page.screenshot(path=artifacts / "job_cancelled.png", full_page=True)
    assert problems == []
