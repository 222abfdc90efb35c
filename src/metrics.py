"""Prometheus metrics for ``GET /metrics``, summed over every worker process of one server.

Hypercorn serves with several worker processes and a scrape reaches only one of them, so each
worker writes its values to memory-mapped files (prometheus-client's multiprocess mode) and the
worker that answers ``/metrics`` adds up the files of all of them.

The files live in a directory that the workers of one server share and that is new for every
server start: ``<tmp>/figserve-metrics-<uid>/<master pid>-<master start time>``. Every worker
derives the same name from its parent (the Hypercorn master), so ``hypercorn --config
hypercorn.toml src.app:app`` needs no extra setup; directories of masters that no longer run are
removed at start. An operator may set ``PROMETHEUS_MULTIPROC_DIR`` instead; it is then used as
is and must be emptied before each start. A process that is not a spawned worker (tests,
``--workers 0``) keeps its metrics in memory.

This module chooses the directory when first imported, before ``prometheus_client`` is, because
prometheus-client picks its storage at import.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from quart import Quart, Response, request

from .render import RenderJob, RenderObserver

log = logging.getLogger("figserve.metrics")
ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
_RUN_NAME = re.compile(r"^(\d+)-(\d*)$")


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (Linux), so a reused pid is not mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22; the command name (field 2) may contain spaces, so count from its ")".
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _start_time(pid) == start


def _remove_stale(base: Path, keep: str) -> None:
    for entry in base.iterdir():
        match = _RUN_NAME.match(entry.name)
        if entry.name == keep or match is None:
            continue
        if not _alive(int(match.group(1)), match.group(2)):
            shutil.rmtree(entry, ignore_errors=True)


def _choose_dir() -> str | None:
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return explicit
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = Path(tempfile.gettempdir()) / f"figserve-metrics-{uid}"
    name = f"{parent.pid}-{_start_time(parent.pid)}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        if hasattr(os, "getuid") and (base.is_symlink() or base.stat().st_uid != uid):
            raise PermissionError(f"{base} is not owned by this user")
        (base / name).mkdir(mode=0o700, exist_ok=True)
        _remove_stale(base, keep=name)
    except OSError as exc:
        log.warning("metrics are per worker, not summed: cannot use %s (%s)", base, exc)
        return None
    return str(base / name)


if "prometheus_client" in sys.modules and ENV_DIR not in os.environ:
    # Too late to switch storage: whoever imported it first decided.
    MULTIPROCESS_DIR: str | None = None
else:
    MULTIPROCESS_DIR = _choose_dir()
    if MULTIPROCESS_DIR is not None:
        os.environ[ENV_DIR] = MULTIPROCESS_DIR

from prometheus_client import (  # noqa: E402  (after the directory is chosen, see above)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Label values taken from requests come from fixed sets, so no request can add a series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
UNMATCHED = "unmatched"


def method_label(method: str) -> str:
    """The method as a label: a standard one, or ``other``."""
    return method if method in HTTP_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


RENDER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# RenderStats field -> (metric name, help)
_RENDER_COUNTERS = {
    "started": ("figserve_renders_started", "Renders handed to a render process."),
    "finished": ("figserve_renders_finished", "Renders that produced an image."),
    "failed": ("figserve_renders_failed", "Renders that raised an error."),
    "cache_hits": ("figserve_render_cache_hits", "Deterministic renders served from the cache."),
    "cache_misses": ("figserve_render_cache_misses", "Deterministic renders not in the cache."),
    "rejected": ("figserve_renders_rejected", "Renders refused at the admission limit (503)."),
    "timeouts": ("figserve_render_timeouts", "Requests whose render missed the deadline (503)."),
    "cancelled": (
        "figserve_renders_cancelled",
        "Queued renders dropped before they ran because every requester left.",
    ),
    "killed": (
        "figserve_render_processes_killed",
        "Render processes killed because a render passed its deadline.",
    ),
    "crashed": (
        "figserve_render_processes_crashed",
        "Render processes that died during a render (crash, out of memory).",
    ),
}


class Metrics(RenderObserver):
    """The metrics of one app; the renderer reports to it, ``/metrics`` reads it."""

    def __init__(self) -> None:
        self.multiprocess = MULTIPROCESS_DIR is not None or ENV_DIR in os.environ
        # Per app, so apps built in one process (tests) do not share counts. In multiprocess
        # mode values go to the shared files and this registry is not what /metrics reads.
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "figserve_http_requests",
            "HTTP responses by route template, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.render_seconds = Histogram(
            "figserve_render_duration_seconds",
            "CPU time a render process spent drawing and encoding one image.",
            ["figure", "format"],
            buckets=RENDER_BUCKETS,
            registry=reg,
        )
        self.counters = {
            event: Counter(name, text, ["figure", "format"], registry=reg)
            for event, (name, text) in _RENDER_COUNTERS.items()
        }
        self.queue_depth = Gauge(
            "figserve_render_queue_depth",
            "Admitted renders waiting for a render process.",
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.in_flight = Gauge(
            "figserve_renders_in_flight",
            "Renders executing in a render process now.",
            multiprocess_mode="livesum",
            registry=reg,
        )

    # RenderObserver
    def count(self, event: str, job: RenderJob) -> None:
        self.counters[event].labels(job.label, job.format).inc()

    def rendered(self, job: RenderJob, seconds: float) -> None:
        self.render_seconds.labels(job.label, job.format).observe(seconds)

    def queued(self, delta: int) -> None:
        self.queue_depth.inc(delta)

    def running(self, delta: int) -> None:
        self.in_flight.inc(delta)

    def exposition(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def worker_exit(self) -> None:
        """Drop this process's live gauges (queue depth, in flight) from the sums."""
        if self.multiprocess:
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(os.getpid())


def install(app: Quart) -> Metrics:
    """Create the app's metrics and count every response by route and status."""
    metrics = Metrics()
    app.extensions["figserve.metrics"] = metrics

    @app.after_request
    async def _count_response(response: Response) -> Response:
        # The route is a rule of the app (a template such as /fig/<mean_var>), never the path.
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        labels = (route, method_label(request.method), status_label(response.status_code))
        metrics.requests.labels(*labels).inc()
        return response

    return metrics


def metrics_of(app: Quart) -> Metrics:
    return app.extensions["figserve.metrics"]


CONTENT_TYPE = CONTENT_TYPE_LATEST
