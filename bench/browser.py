"""A 12-image page in headless Chromium: navigation start until every image has loaded.

The page comes from a tiny static server in this process (it is not what is measured; the
browser driver intercepting requests instead would sit in every image request's path too); its
twelve ``<img>`` tags name distinct unseeded figserve ``/fig`` URLs, so every load makes the
server draw twelve new figures, over the connections a real browser opens (six per host).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS

from . import procs
from .server import HOST
from .stats import median

IMAGES = 12
PAGE_PATH = "/bench/page12"


def image_paths(count: int = IMAGES) -> list[str]:
    """Distinct unseeded images: each is drawn anew on every load."""
    return [f"/fig/{5 + i}_3" for i in range(count)]


def page_html(base_url: str, count: int = IMAGES) -> str:
    imgs = "\n".join(
        f'<img src="{base_url}{path}" width="400" height="300" alt="">'
        for path in image_paths(count)
    )
    return f"<!doctype html><html><head><meta charset='utf-8'></head><body>\n{imgs}\n</body></html>"


_TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const imgs = [...document.images];
  return {
    load_ms: nav.loadEventStart,
    complete: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    images: imgs.length,
  };
}"""


@dataclass(frozen=True)
class ChromiumRun:
    loads_ms: list[float]
    complete: bool  # every image of every load decoded
    browser_cpu_ms: float  # Chromium's own CPU per load (median), on the server's cores

    @property
    def median_ms(self) -> float:
        return median(self.loads_ms)


def _browser_cpu_s() -> float:
    """CPU seconds used so far by the Chromium processes under this process."""
    return sum(p.cpu_s for p in procs.tree(os.getpid()) if "chrom" in p.comm)


@contextlib.contextmanager
def _page_server(html: str) -> Iterator[str]:
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a browser closing its connection early is not an error here

    server = Server((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}{PAGE_PATH}"
    finally:
        server.shutdown()
        server.server_close()


def measure(base_url: str, loads: int = 8, warm: int = 2) -> ChromiumRun:
    """Load the page ``warm + loads`` times in one tab, as a visitor reloading it would.

    Unseeded images are ``no-store``, so every load fetches all twelve again.
    """
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    cpu: list[float] = []
    complete = True
    with _page_server(page_html(base_url)) as page_url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            for i in range(warm + loads):
                cpu0 = _browser_cpu_s()
                page.goto(page_url, wait_until="load", timeout=30_000)
                cpu1 = _browser_cpu_s()
                result = page.evaluate(_TIMING)
                if i >= warm:
                    times.append(result["load_ms"])
                    cpu.append((cpu1 - cpu0) * 1000)
                    complete = complete and result["complete"] == result["images"]
            context.close()
        finally:
            browser.close()
    return ChromiumRun(loads_ms=times, complete=complete, browser_cpu_ms=median(cpu))
