"""The measurements made against one running server, shared by the main run and the lever runs."""

from __future__ import annotations

from typing import Any

from . import browser
from .harness import Server, wrk, wrk_together

FIG = "/fig/5_3"
PAGE = "/normal/5_3"
SEEDED = "/fig/5_3?seed=1"
PAGE_PROBE_DELAY_MS = 50  # one page request every ~50 ms: a visitor, not a second load


def throughput(server: Server, seconds: float, path: str = FIG) -> dict[int, dict[str, Any]]:
    """Closed-loop load at 6 and 12 clients."""
    return {c: wrk(server.url + path, c, seconds) for c in (6, 12)}


def page_under_load(
    server: Server, seconds: float, fig_path: str = FIG, page_path: str = PAGE
) -> dict[str, Any]:
    """Page latency from one paced visitor while 12 clients keep every core rendering images."""
    load, page = wrk_together(
        ({"url": server.url + fig_path, "connections": 12, "seconds": seconds + 3}, 0.0),
        (
            {
                "url": server.url + page_path,
                "connections": 1,
                "threads": 1,
                "seconds": seconds,
                "delay_ms": PAGE_PROBE_DELAY_MS,
            },
            1.5,
        ),
    )
    return {"page": page, "load": load}


def page_idle(server: Server, seconds: float, page_path: str = PAGE) -> dict[str, Any]:
    return wrk(server.url + page_path, 1, seconds, threads=1, delay_ms=PAGE_PROBE_DELAY_MS)


def cached(server: Server, seconds: float, connections: int = 8) -> dict[str, Any]:
    """Seeded image requests answered from the render cache (the first one fills it)."""
    wrk(server.url + SEEDED, 1, 1, threads=1)
    return wrk(server.url + SEEDED, connections, seconds, threads=1)


def browser_page(server: Server, loads: int) -> dict[str, Any]:
    return browser.measure(server.url, loads=loads)
