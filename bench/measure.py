"""The measurements made against one running server, shared by every suite.

Each returns a typed record. Throughput is always bracketed by raw-limit runs (before and after,
in the same run) and reported as a ratio; latencies come from ``wrk``'s own histogram; the page
probe is a client of this package that behaves like a browser loading a page.
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from . import browser, client
from .load import WrkResult, together, wrk
from .raw import RawLimit, RawRun
from .server import Layout, Server
from .stats import median

FIG = "/fig/5_3"
PAGE = "/normal/5_3"
SEEDED = "/fig/5_3?seed=1"
PAGE_PROBE_DELAY_MS = 50  # one page request every ~50 ms: a visitor, not a second load
HEALTH_PROBE_DELAY_MS = 20  # a health check every ~20 ms: enough samples for a p99
OVERLOAD_FACTOR = 10
OVERLOAD_MAX_CLIENTS = 400


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Budget:
    """Wall-clock seconds a suite may use: a new server start begins only if it fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, estimate: float) -> bool:
        return self.left() >= estimate


# --- which worker answered ---------------------------------------------------------------------

# Hypercorn's access log line as hypercorn.toml formats it: "[<worker pid>] [INFO] <client
# host:port> "<method> <path> ..."; the client port identifies the connection.
_ACCESS = re.compile(r"\[(\d+)\] \[INFO\] [\d.]+:(\d+) \"GET (\S+)")


def access_log(server: Server, since: int) -> list[tuple[int, int, str]]:
    """``(worker pid, client port, path)`` of each request the server logged after ``since``."""
    return [(int(m[1]), int(m[2]), m[3]) for m in _ACCESS.finditer(server.output(since))]


def responses_by_worker(server: Server, since: int, prefix: str = "/fig/") -> list[int]:
    """Image responses per worker process since ``since``, largest first (from the access log)."""
    counts = Counter(pid for pid, _, path in access_log(server, since) if path.startswith(prefix))
    return sorted(counts.values(), reverse=True)


# --- the browser-like page probe ---------------------------------------------------------------


@dataclass(frozen=True)
class ProbeLoad:
    ms: float  # first connection opened to last image received
    ok: int
    failed: int
    statuses: dict[str, int]
    # Distinct worker processes that answered: from a response header naming the worker if the
    # server sends one, else from the server's access log (client port -> worker pid); None
    # when neither says.
    workers: int | None


@dataclass(frozen=True)
class ProbeRun:
    connections: int
    images: int
    workers_source: str | None  # "header", "access log" or None
    loads: list[ProbeLoad]

    @property
    def loads_ms(self) -> list[float]:
        return [load.ms for load in self.loads]

    @property
    def median_ms(self) -> float:
        return median(self.loads_ms)

    @property
    def max_ms(self) -> float:
        return max(self.loads_ms, default=float("nan"))


def page_probe(
    server: Server, loads: int = 8, warm: int = 1, connections: int = 6, images: int = 12
) -> ProbeRun:
    """Load a page's ``images`` unseeded images over ``connections`` keep-alive connections
    opened together, ``warm + loads`` times, each load on new connections (a new visitor)."""
    paths = browser.image_paths(images)
    measured: list[tuple[float, list[client.Fetch], int]] = []
    for i in range(warm + loads):
        mark = server.log_size()
        wall, fetches = client.fetch_together(server.port, paths, connections)
        if i >= warm:
            measured.append((wall, fetches, mark))
        time.sleep(0.2)  # the previous load's connections close before the next opens
    source = None
    if any(f.worker for _, fetches, _ in measured for f in fetches):
        source = "header"
    elif measured and access_log(server, measured[0][2]):
        source = "access log"
    out = []
    for wall, fetches, mark in measured:
        ok = [f for f in fetches if 200 <= f.status < 300]
        workers: int | None = None
        if source == "header":
            workers = len({f.worker for f in ok if f.worker})
        elif source == "access log":
            workers = _workers_from_log(server, mark, {f.local_port for f in ok})
        out.append(
            ProbeLoad(
                ms=wall * 1000,
                ok=len(ok),
                failed=len(fetches) - len(ok),
                statuses=dict(Counter(str(f.status) for f in fetches)),
                workers=workers,
            )
        )
    return ProbeRun(connections, images, source, out)


def _workers_from_log(server: Server, since: int, ports: set[int]) -> int | None:
    # Hypercorn writes the access line just after the response: give it a moment to appear.
    deadline = time.monotonic() + 2
    while True:
        by_port = {port: pid for pid, port, _ in access_log(server, since) if port in ports}
        if set(by_port) == ports or time.monotonic() > deadline:
            return len(set(by_port.values())) if by_port else None
        time.sleep(0.05)


# --- throughput against the raw limit ----------------------------------------------------------


@dataclass(frozen=True)
class ThroughputRun:
    clients: int
    wrk: WrkResult
    raw_fps: float  # mean of the raw-limit runs just before and after
    ratio: float  # ok responses per second / raw_fps
    server_cpu_ms_per_ok: float  # CPU of every server process per ok response
    by_worker: list[int]  # image responses per worker (access log), largest first


def bracketed_throughput(
    server: Server,
    limit: RawLimit,
    seconds: float,
    raw_seconds: float,
    path: str = FIG,
    clients: tuple[int, ...] = (6, 12),
) -> tuple[list[ThroughputRun], list[RawRun]]:
    """Raw limit, a wrk run per client count, raw limit again; each ratio uses the mean of the
    two raw runs around it."""
    before = limit.measure(raw_seconds)
    runs = []
    for c in clients:
        mark = server.log_size()
        cpu0 = server.cpu_seconds()
        result = wrk(server.url + path, c, seconds)
        cpu = server.cpu_seconds() - cpu0
        runs.append((c, result, cpu, responses_by_worker(server, mark)))
    after = limit.measure(raw_seconds)
    raw_fps = (before.fps + after.fps) / 2
    out = [
        ThroughputRun(c, r, raw_fps, r.ok_rps / raw_fps, 1000 * cpu / max(1, r.ok), split)
        for c, r, cpu, split in runs
    ]
    return out, [before, after]


# --- latency under load ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnderLoad:
    """A paced prober's latencies while a closed-loop load runs."""

    probe: WrkResult
    load: WrkResult


def page_under_load(
    server: Server, seconds: float, fig_path: str = FIG, page_path: str = PAGE
) -> UnderLoad:
    """Page latency from one paced visitor while 12 clients keep every core rendering images."""
    load, page = together(
        (0.0, lambda: wrk(server.url + fig_path, 12, seconds + 3)),
        (
            1.5,
            lambda: wrk(
                server.url + page_path, 1, seconds, threads=1, delay_ms=PAGE_PROBE_DELAY_MS
            ),
        ),
    )
    return UnderLoad(probe=page, load=load)


def page_idle(server: Server, seconds: float, page_path: str = PAGE) -> WrkResult:
    return wrk(server.url + page_path, 1, seconds, threads=1, delay_ms=PAGE_PROBE_DELAY_MS)


@dataclass(frozen=True)
class Overload:
    capacity: int  # renders the server runs at once (its layout)
    clients: int  # concurrent image requests: OVERLOAD_FACTOR x capacity
    health: UnderLoad  # /healthz, paced, during the image load


def health_overload(server: Server, layout: Layout, seconds: float, path: str = FIG) -> Overload:
    """``/healthz`` latency while 10x the server's render capacity in concurrent clients ask for
    images (statuses counted: shedding with 503 and Retry-After is expected)."""
    clients = min(OVERLOAD_MAX_CLIENTS, OVERLOAD_FACTOR * layout.capacity)
    load, health = together(
        (0.0, lambda: wrk(server.url + path, clients, seconds + 2, count_status=True)),
        (
            1.0,
            lambda: wrk(
                server.url + "/healthz", 1, seconds, threads=1, delay_ms=HEALTH_PROBE_DELAY_MS
            ),
        ),
    )
    return Overload(layout.capacity, clients, UnderLoad(probe=health, load=load))


def cached(server: Server, seconds: float, connections: int = 8) -> WrkResult:
    """Seeded image requests answered from the render cache (the first one fills it)."""
    wrk(server.url + SEEDED, 1, 1, threads=1)
    return wrk(server.url + SEEDED, connections, seconds, threads=1)


# --- correctness under load --------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCheck:
    checked: int
    bad: int
    kinds: list[str] = field(default_factory=list)


def validate_images(
    server: Server, path: str = FIG, count: int = 24, size: tuple[int, int] = (400, 300)
) -> ImageCheck:
    """Fetch ``count`` images over 12 connections at once; each must be a PNG of ``size``."""
    from PIL import Image

    def check(body: bytes) -> str | None:
        try:
            image = Image.open(io.BytesIO(body))
            image.load()
        except Exception as exc:  # a truncated or garbled body is what is being counted
            return type(exc).__name__
        if image.format != "PNG" or image.size != size:
            return f"{image.format} {image.size}"
        return None

    _, fetches = client.fetch_together(server.port, [path] * count, 12, check=check)
    bad = [f.error or f"status {f.status}" for f in fetches if f.status != 200 or f.error]
    return ImageCheck(checked=count, bad=len(bad), kinds=sorted(set(bad)))


# --- the machine -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    cores: int
    python: str
    matplotlib: str
    wrk: str
    load_average_at_start: tuple[float, float, float]
    date: str

    def describe(self, command: str, seconds: float) -> str:
        return (
            f"{self.date}: {self.cores} cores, Python {self.python}, matplotlib "
            f"{self.matplotlib}, {self.wrk}; load average at start "
            f"{self.load_average_at_start[0]:.1f}. `{command}`: {seconds:.0f} s."
        )


def machine() -> Machine:
    import os
    import platform
    import subprocess

    import matplotlib

    from .procs import CORES

    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return Machine(
        cores=CORES,
        python=platform.python_version(),
        matplotlib=matplotlib.__version__,
        wrk=version.split("[")[0].strip() or "wrk",
        load_average_at_start=os.getloadavg(),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
    )
