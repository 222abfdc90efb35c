"""Prometheus metrics for ``GET /metrics``, summed over every worker process of one server.

Hypercorn serves with several worker processes and a scrape reaches only one of them, so each
worker writes its values to memory-mapped files (prometheus-client's multiprocess mode) and the
worker that answers ``/metrics`` adds up the files of all of them.

The files live in a directory that the workers of one server share and that is new for every
server start: ``<tmp>/figserve-<uid>/metrics/<master pid>-<master start time>``. Every worker
derives the same name from its parent (the Hypercorn master) when it starts serving, so
``hypercorn --config hypercorn.toml src.app:app`` needs no extra setup; directories of masters
that no longer run are removed then. An operator may set ``PROMETHEUS_MULTIPROC_DIR`` instead;
it is then used as is and must be emptied before each start. A process that is not a spawned
worker (tests, ``--workers 0``) keeps its metrics in memory.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from quart import Quart, Response, request

from .live import VersionObserver
from .live.streams import HubObserver
from .render import RenderJob, RenderObserver
from .system import pid_alive, private_dir, start_time

log = logging.getLogger("figserve.metrics")
ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
_RUN_NAME = re.compile(r"^(\d+)-(\d*)$")


def _remove_stale(base: Path, keep: str) -> None:
    for entry in base.iterdir():
        match = _RUN_NAME.match(entry.name)
        if entry.name == keep or match is None:
            continue
        if not pid_alive(int(match.group(1)), match.group(2)):
            shutil.rmtree(entry, ignore_errors=True)


def _shared_dir() -> str | None:
    """The directory this server's workers share, or None to keep metrics in memory."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return explicit
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    name = f"{parent.pid}-{start_time(parent.pid)}"
    try:
        base = private_dir("metrics")
        (base / name).mkdir(mode=0o700, exist_ok=True)
        _remove_stale(base, keep=name)
    except OSError as exc:
        log.warning("metrics are per worker, not summed: no folder for them (%s)", exc)
        return None
    return str(base / name)


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
    "shared_hits": (
        "figserve_render_shared_cache_hits",
        "Deterministic renders missing here but found in the cache shared through Redis.",
    ),
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
    "protocol_errors": (
        "figserve_render_protocol_errors",
        "Render processes replaced because they answered out of turn (503).",
    ),
    "warm_hits": (
        "figserve_render_warm_hits",
        "Renders that updated a figure their render process kept, instead of drawing anew.",
    ),
    "warm_misses": (
        "figserve_render_warm_misses",
        "Renders of a figure with an update function that were drawn fresh (then kept).",
    ),
    "warm_update_failures": (
        "figserve_render_warm_update_failures",
        "Updates of a kept figure that raised: the figure was dropped and drawn fresh.",
    ),
    "version_mismatches": (
        "figserve_render_version_mismatches",
        "Images whose render process ran other code than its worker: served no-store, never "
        "cached (restart figserve).",
    ),
}


class Metrics(RenderObserver, VersionObserver):
    """The metrics of one serving app; the renderer reports to it, ``/metrics`` reads it.

    Make it with ``start`` when serving starts and ``stop`` it when serving stops."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.multiprocess = directory is not None
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
        self.state_restored = Counter(
            "figserve_render_state_restored",
            "State a figure left changed in its render process and figserve put back.",
            ["figure", "state"],
            registry=reg,
        )
        self.state_recycled = Counter(
            "figserve_render_state_recycled",
            "Render processes replaced because a figure left state behind that cannot be undone.",
            ["figure", "state"],
            registry=reg,
        )
        self.in_flight = Gauge(
            "figserve_renders_in_flight",
            "Renders executing in a render process now.",
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.version_checks = Counter(
            "figserve_version_checks",
            "Data version checks of live figures by outcome: same, changed, failed, timeout, "
            "invalid (not a str, int or finite float, or too long), busy (no probe process was "
            "free), shared (another instance's check was taken).",
            ["figure", "outcome"],
            registry=reg,
        )
        self.version_changes = Counter(
            "figserve_version_changes",
            "New data versions of live figures.",
            ["figure"],
            registry=reg,
        )
        self.stale = Counter(
            "figserve_figure_stale",
            "Images of an earlier data version served because the version check (check) or "
            "the render of the new version (render) failed.",
            ["figure", "reason"],
            registry=reg,
        )
        self.pairs = Gauge(
            "figserve_version_pairs",
            "Figure and parameter pairs whose data version is kept.",
            multiprocess_mode="livesum",
            registry=reg,
        )

        self.live = LiveMetrics(reg)

    # RenderObserver
    def count(self, event: str, job: RenderJob) -> None:
        self.counters[event].labels(job.label, job.format).inc()

    def rendered(self, job: RenderJob, seconds: float) -> None:
        self.render_seconds.labels(job.label, job.format).observe(seconds)

    def process_state(self, figure: str, restored: list[str], recycled: list[str]) -> None:
        for state in restored:
            self.state_restored.labels(figure, state).inc()
        for state in recycled:
            self.state_recycled.labels(figure, state).inc()

    def queued(self, delta: int) -> None:
        self.queue_depth.inc(delta)

    def running(self, delta: int) -> None:
        self.in_flight.inc(delta)

    # VersionObserver
    def version_checked(self, figure: str, outcome: str, seconds: float) -> None:
        self.version_checks.labels(figure, outcome).inc()

    def version_changed(self, figure: str) -> None:
        self.version_changes.labels(figure).inc()

    def version_pairs(self, count: int) -> None:
        self.pairs.set(count)

    def figure_stale(self, figure: str, reason: str) -> None:
        self.stale.labels(figure, reason).inc()

    @classmethod
    def start(cls) -> Metrics:
        """The metrics of this worker, in the files its server shares when it has several."""
        directory = _shared_dir()
        if directory is not None:
            # prometheus-client reads both when a value is made: set them before any is.
            os.environ[ENV_DIR] = directory
            values.ValueClass = values.MultiProcessValue()
        return cls(directory)

    def exposition(self) -> bytes:
        if self.directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.directory)
        return generate_latest(registry)

    def stop(self) -> None:
        """Drop this process's live gauges (queue depth, in flight) from the sums."""
        if self.directory is not None:
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(os.getpid(), self.directory)


class LiveMetrics(HubObserver):
    """The live streams' metrics (``figserve/live/streams.py``)."""

    def __init__(self, reg: CollectorRegistry) -> None:
        self.open = Gauge(
            "figserve_live_streams",
            "Live page streams open now.",
            multiprocess_mode="livesum",
            registry=reg,
        )
        self.refusals = Counter(
            "figserve_live_streams_refused",
            "Live streams refused: busy (worker cap, 503), client (client cap, 429), stopping.",
            ["reason"],
            registry=reg,
        )
        self.ends = Counter(
            "figserve_live_streams_ended",
            "Live streams ended: client (it left), stop (the server stopped), stalled (it "
            "took nothing for FIGSERVE_LIVE_SEND_TIMEOUT).",
            ["reason"],
            registry=reg,
        )
        self.changes = Counter(
            "figserve_live_changes",
            "Version changes announced to live viewers, by figure.",
            ["figure"],
            registry=reg,
        )
        self.notices = Counter(
            "figserve_live_notices",
            "Streams told of a version change (one per stream and change).",
            registry=reg,
        )
        self.renders_ahead = Counter(
            "figserve_live_renders_ahead",
            "Images of a new version rendered (or found cached) before viewers were told.",
            ["figure", "outcome"],
            registry=reg,
        )

    def streams(self, delta: int) -> None:
        self.open.inc(delta)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def ended(self, reason: str) -> None:
        self.ends.labels(reason).inc()

    def announced(self, figure: str, streams: int) -> None:
        self.changes.labels(figure).inc()
        self.notices.inc(streams)

    def ahead(self, figure: str, outcome: str) -> None:
        self.renders_ahead.labels(figure, outcome).inc()


def install(app: Quart, current: Callable[[], Metrics | None]) -> None:
    """Count every response of ``app`` by route, method and status, in ``current()``."""

    @app.after_request
    async def _count_response(response: Response) -> Response:
        metrics = current()
        if metrics is not None:
            # The route is a rule of the app (a template such as /fig/<mean_var>), not the path.
            rule = request.url_rule
            route = rule.rule if rule is not None else UNMATCHED
            labels = (route, method_label(request.method), status_label(response.status_code))
            metrics.requests.labels(*labels).inc()
        return response


CONTENT_TYPE = CONTENT_TYPE_LATEST
