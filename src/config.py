"""Settings for one figserve process.

Defaults live here; any of them can be overridden by an environment variable named
``FIGSERVE_<KEY>`` (so operators configure the shipped server without touching code) or by the
mapping passed to ``create_app`` (so tests build the app they need). Values out of range are
refused at start, naming the variable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SECONDS = 1.0
DAYS = 86400 * SECONDS
MIN_ADMIN_TOKEN = 16
_PUBLIC_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$", re.ASCII)
_REDIS_URL = re.compile(
    r"^rediss?://(?:[^@/\s]*@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?(?:/[0-9]{1,5})?/?$",
    re.ASCII,
)


def _at_least(default: Any, minimum: float) -> Any:
    return field(default=default, metadata={"min": minimum})


@dataclass(frozen=True)
class Settings:
    # Render processes per worker for pages, images and the API (0: one per usable core). Every
    # render runs in one of them, so a worker's renders use every core whichever connection
    # brought them.
    render_processes: int = _at_least(0, 0)
    # Threads per worker that hand renders to the processes and wait on them with the GIL
    # released (0: one per render process, interactive and background).
    render_threads: int = _at_least(0, 0)
    # Renders admitted per worker (running + queued) before new ones are shed with 503 and
    # Retry-After.
    render_queue_limit: int = _at_least(32, 1)
    # Seconds a request waits for its render, and a render may run in its process: past it the
    # process is killed and replaced.
    render_timeout: float = _at_least(10 * SECONDS, 0.1)
    # Address space a render process may add to what it starts with; a render that needs more
    # fails with 422 (too complex) instead of taking the machine's memory. 0: no cap.
    render_memory_mb: int = _at_least(1024, 0)
    # A render process is replaced after this many renders, or once its resident size passes
    # render_recycle_rss_mb, so slow leaks and fragmentation never build up.
    render_recycle_after: int = _at_least(500, 1)
    render_recycle_rss_mb: int = _at_least(400, 1)
    # Byte budget of the in-process LRU of deterministic (seeded) renders.
    cache_bytes: int = _at_least(64 * MIB, 0)
    # Hard cap on output pixels (width x height) of any raster image.
    max_pixels: int = _at_least(6_000_000, 2500)
    # zlib level for PNG: 3 is about as small as matplotlib's own writer at 6, in half the time.
    png_compress_level: int = _at_least(3, 0)
    # Request bodies (JSON specs, uploads) larger than this answer 413, with or without a
    # Content-Length.
    max_body_bytes: int = _at_least(2 * MIB, 1024)
    # A request body must have arrived in full this long after the request began, or the
    # request answers 408 and its connection closes: a slow sender cannot hold it open.
    body_timeout: float = _at_least(30 * SECONDS, 0.1)
    # Fields of one form (the report form has about ten per figure); more answer 413.
    max_form_fields: int = _at_least(500, 1)
    # Limits for uploaded data sets.
    max_upload_rows: int = _at_least(100_000, 1)
    max_upload_columns: int = _at_least(50, 1)
    # Render one tiny figure at start so the first visitor does not pay for font loading.
    warm_up: bool = True
    log_level: str = "INFO"
    # Background jobs. Every worker of one server must use the same directory (it holds the
    # shared job database and the results); empty means a per-user folder in the temp directory.
    jobs_dir: str = ""
    job_max_items: int = _at_least(500, 1)
    # Jobs queued or running at once, over all workers; more answer 503.
    job_max_active: int = _at_least(4, 1)
    # Jobs queued or running at once for one client (its owner cookie; clients without one
    # share a bucket per IP address); more answer 429.
    job_max_client_active: int = _at_least(2, 1)
    job_max_output_bytes: int = _at_least(256 * MIB, 1)
    # Disk budget of all job results together. A job is admitted only if the finished results
    # plus job_max_output_bytes for it and for every job queued or running still fit; else 503.
    job_results_quota_bytes: int = _at_least(2 * GIB, 1)
    # Estimated work of one job: the output pixels of all its items together; more answer 400.
    job_max_pixels: int = _at_least(250_000_000, 1)
    # A PDF report is assembled in memory: it may hold at most this many canvas pixels in all.
    job_max_pdf_pixels: int = _at_least(100_000_000, 1)
    # Finished results (and their job records) are removed this long after the job ends.
    job_result_ttl: float = _at_least(3600 * SECONDS, 1)
    # Jobs each worker renders at once; each has a render process of its own that runs at a
    # lower priority than page renders. 0: this server takes no jobs from the queue.
    job_threads: int = _at_least(1, 0)
    # A job whose worker died while running it goes back to the queue; after this many
    # interruptions it fails instead.
    job_max_attempts: int = _at_least(3, 1)
    # How often a worker checks for queued jobs, beats the heartbeat of its own and cleans up.
    job_poll_interval: float = _at_least(1 * SECONDS, 0.01)
    # A running job whose worker has not beaten its heartbeat for this long is taken back.
    job_stale_after: float = _at_least(30 * SECONDS, 0.1)
    # How long a client's job owner cookie lasts; each new job renews it.
    owner_cookie_max_age: float = _at_least(7 * DAYS, 1)
    # Bearer token of the operator's view of every client's jobs; empty: no such view.
    admin_token: str = ""
    # The public origin, e.g. https://figs.example.org, when a proxy changes the Host or the
    # scheme: absolute links use it, and requests from it count as same-origin. Empty: links
    # are relative, and only the request's own origin is trusted.
    public_url: str = ""
    # The user's own figure modules, comma-separated dotted names imported at start from the
    # current directory or PYTHONPATH (see src/figures/loading.py).
    figures: str = ""
    # A folder of the user's own Jinja pages, served at /pages/<name>; empty: none.
    pages: str = ""
    # Scale-out mode: redis://host:port/db of the Redis that every instance and job worker
    # shares (render cache, jobs, results). Empty: embedded, no server needed.
    redis_url: str = ""
    # Byte budget of the render cache shared in Redis (0: no shared level); an entry may take
    # at most a sixteenth of it.
    shared_cache_bytes: int = _at_least(256 * MIB, 0)
    # Seconds a shared cache entry is kept after it was written.
    shared_cache_ttl: float = _at_least(DAYS, 1)
    # Seconds a render-cache call to Redis may take before the shared level is skipped for a
    # while (the render happens here instead).
    redis_cache_timeout: float = _at_least(0.5 * SECONDS, 0.01)

    def __post_init__(self) -> None:
        for f in fields(self):
            minimum = f.metadata.get("min")
            if minimum is not None and getattr(self, f.name) < minimum:
                raise ValueError(
                    f"FIGSERVE_{f.name.upper()}={getattr(self, f.name)!r} is below its "
                    f"minimum of {minimum:g}"
                )
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"FIGSERVE_ADMIN_TOKEN must have at least {MIN_ADMIN_TOKEN} characters"
            )
        if self.redis_url and not _REDIS_URL.match(self.redis_url):
            raise ValueError(
                "FIGSERVE_REDIS_URL must be redis://[[user]:password@]host[:port][/db] or "
                f"rediss://... (got {redact(self.redis_url)!r})"
            )
        if self.public_url and not _PUBLIC_URL.match(self.public_url):
            raise ValueError(
                "FIGSERVE_PUBLIC_URL must be an origin, http(s)://host[:port] "
                f"(got {self.public_url!r})"
            )

    @property
    def processes(self) -> int:
        """Interactive render processes per worker, with 0 resolved to the usable cores."""
        return self.render_processes or usable_cores()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Defaults overridden by ``FIGSERVE_*`` variables, converted to each field's type."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"FIGSERVE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)

    def updated(self, overrides: dict[str, Any] | None) -> Settings:
        """A copy with ``overrides`` applied; unknown keys are an error, not silently ignored."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise KeyError(f"unknown figserve settings: {', '.join(unknown)}")
        return replace(self, **overrides)


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def _convert(name: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    try:
        if type_name == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return value
    except ValueError as exc:
        raise ValueError(f"FIGSERVE_{name.upper()}={raw!r} is not a valid {type_name}") from exc
    return raw


def redact(url: str) -> str:
    """A URL as it may be shown: without the password it may carry."""
    return re.sub(r"(://[^:@/]*:)[^@/]*@", r"\1***@", url)
