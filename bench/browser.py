"""A 12-image page in headless Chromium: navigation start until every image has loaded.

The page comes from a tiny static server in this process (it is not what is measured; the
browser driver intercepting requests instead would sit in every image request's path too); its
twelve ``<img>`` tags name distinct unseeded figserve ``/fig`` URLs, so every load makes the
server draw twelve new figures, over the connections a real browser opens (six per host).
"""

from __future__ import annotations

import contextlib
import http.server
import statistics
import threading
from collections.abc import Iterator
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES = 12
PAGE_PATH = "/bench/page12"


def page_html(base_url: str, count: int = IMAGES, query: str = "") -> str:
    imgs = "\n".join(
        f'<img src="{base_url}/fig/{5 + i}_3{query}" width="400" height="300" alt="">'
        for i in range(count)
    )
    return f"<!doctype html><html><head><meta charset='utf-8'></head><body>\n{imgs}\n</body></html>"


_TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const imgs = [...document.images];
  const fetched = performance.getEntriesByType('resource')
    .filter(r => r.initiatorType === 'img');
  return {
    load_ms: nav.loadEventStart,
    doc_ms: nav.responseEnd,
    last_image_ms: Math.max(...fetched.map(r => r.responseEnd)),
    complete: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    images: imgs.length,
    image_requests: fetched.length,
  };
}"""


def _browser_cpu_s() -> float:
    """CPU seconds used so far by the Chromium processes under this process."""
    import os
    from pathlib import Path

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stack = [os.getpid()]
    while stack:
        pid = stack.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        stack.extend(int(c) for c in children)
        name, _, rest = stat.partition(") ")
        if "chrom" in name.split("(", 1)[-1]:
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


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

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PAGE_PATH}"
    finally:
        server.shutdown()
        server.server_close()


def measure(
    base_url: str,
    loads: int = 8,
    warm: int = 2,
    html: str | None = None,
    fresh_context: bool = False,
) -> dict[str, Any]:
    """Load the page ``warm + loads`` times in one tab, as a visitor reloading it would.

    Unseeded images are ``no-store``, so every load fetches all twelve again. With
    ``fresh_context`` each load gets a new browser context instead (an empty cache).
    """
    from playwright.sync_api import sync_playwright

    html = html or page_html(base_url)
    runs: list[dict[str, Any]] = []
    with _page_server(html) as page_url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            for i in range(warm + loads):
                if fresh_context and i:
                    context.close()
                    context = browser.new_context(viewport={"width": 1280, "height": 1000})
                page = context.pages[0] if context.pages else context.new_page()
                cpu0 = _browser_cpu_s()
                page.goto(page_url, wait_until="load", timeout=30_000)
                cpu1 = _browser_cpu_s()
                result = page.evaluate(_TIMING)
                result["browser_cpu_ms"] = (cpu1 - cpu0) * 1000
                if i >= warm:
                    runs.append(result)
            context.close()
        finally:
            browser.close()
    times = [r["load_ms"] for r in runs]
    return {
        "loads": loads,
        "images": IMAGES,
        "load_ms": times,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "all_complete": all(r["complete"] == r["images"] for r in runs),
        "image_requests": [r["image_requests"] for r in runs],
        # The page itself comes from the static server: time spent before its response.
        "doc_ms": statistics.median(r["doc_ms"] for r in runs),
        "last_image_ms": statistics.median(r["last_image_ms"] for r in runs),
        # Chromium's own CPU per load (it shares the machine's cores with the server).
        "browser_cpu_ms": statistics.median(r["browser_cpu_ms"] for r in runs),
    }
