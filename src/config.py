"""Settings for one figserve process.

Defaults live here; any of them can be overridden by an environment variable named
``FIGSERVE_<KEY>`` (so operators configure the shipped server without touching code) or by the
mapping passed to ``create_app`` (so tests build the app they need).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SECONDS = 1.0
DAYS = 86400 * SECONDS
MIN_ADMIN_TOKEN = 16
_PUBLIC_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$", re.ASCII)


@dataclass(frozen=True)
class Settings:
    # Drawing holds the GIL, so a second thread in the same worker adds no CPU, only contention
    # with the event loop; parallelism comes from worker processes (hypercorn.toml). With 4
    # workers x 1 thread, 12 clients reached 0.89 of the raw limit against 0.32 for 2 x 2, and
    # page p99 under load 29 ms against 45 (bench/results/layouts.md).
    render_threads: int = 1
    # Renders admitted per worker (running + queued) before new ones are shed with 503 and
    # Retry-After. Connections are not spread evenly over workers, so one worker must hold a
    # dozen clients: 16 gave 0 errors at 12 clients where 8 shed thousands
    # (bench/results/queue.md). At 20-90 ms per default-size figure that is about a second of
    # queued work; 200 simultaneous requests to 4 workers are still mostly shed.
    render_queue_limit: int = 16
    # A render still unfinished after this answers 503; the thread finishes it in the background.
    render_timeout: float = 10 * SECONDS
    # Byte budget of the in-process LRU of deterministic (seeded) renders.
    cache_bytes: int = 64 * MIB
    # Hard cap on output pixels (width x height) of any raster image.
    max_pixels: int = 6_000_000
    # zlib level for PNG. 3 compresses in half the time of 6 (a 1200x900 figure: ~30 instead of
    # ~36 ms in all) to about the size matplotlib's own writer reaches at 6; 6 is ~25% smaller.
    # Measured in bench/results/levers.md.
    png_compress_level: int = 3
    # Request bodies (JSON specs, uploads) larger than this answer 413, with or without a
    # Content-Length.
    max_body_bytes: int = 2 * MIB
    # A request body must have arrived in full this long after the request began, or the
    # request answers 408 and its connection closes: a slow sender cannot hold it open.
    body_timeout: float = 30 * SECONDS
    # Fields of one form (the report form has about ten per figure); more answer 413.
    max_form_fields: int = 500
    # Limits for uploaded data sets.
    max_upload_rows: int = 100_000
    max_upload_columns: int = 50
    # Render one tiny figure at start so the first visitor does not pay for font loading.
    warm_up: bool = True
    log_level: str = "INFO"
    # Background jobs. Every worker of one server must use the same directory (it holds the
    # shared job database and the results); empty means a per-user folder in the temp directory.
    jobs_dir: str = ""
    job_max_items: int = 500
    # Jobs queued or running at once, over all workers; more answer 503.
    job_max_active: int = 4
    # Jobs queued or running at once for one client (its owner cookie; clients without one
    # share a bucket per IP address); more answer 429.
    job_max_client_active: int = 2
    job_max_output_bytes: int = 256 * MIB
    # Disk budget of all job results together. A job is admitted only if the finished results
    # plus job_max_output_bytes for it and for every job queued or running still fit; else 503.
    job_results_quota_bytes: int = 2 * GIB
    # Estimated work of one job: the output pixels of all its items together; more answer 400.
    job_max_pixels: int = 250_000_000
    # matplotlib keeps a PDF's raster images in memory until the document ends: a PDF job may
    # hold at most this many canvas pixels in all (about 4 bytes each at worst).
    job_max_pdf_pixels: int = 100_000_000
    # Finished results (and their job records) are removed this long after the job ends.
    job_result_ttl: float = 3600 * SECONDS
    # Jobs each worker renders at once, each apart from the interactive render pool: in a
    # lower-priority process of its own ("process": no shared GIL, the OS runs pages first) or in
    # a lower-priority thread of the worker ("thread": no extra process; pages slow down more).
    job_threads: int = 1
    job_executor: str = "process"
    # How often a worker checks for queued jobs, beats the heartbeat of its own and cleans up.
    job_poll_interval: float = 1 * SECONDS
    # A running job whose worker has not beaten its heartbeat for this long is marked failed.
    job_stale_after: float = 30 * SECONDS
    # Before each job item, wait up to this long for the worker's page renders to finish.
    job_yield_max: float = 0.5 * SECONDS
    # How long a client's job owner cookie lasts; each new job renews it.
    owner_cookie_max_age: float = 7 * DAYS
    # Bearer token of the operator's view of every client's jobs; empty: no such view.
    admin_token: str = ""
    # The public origin, e.g. https://figs.example.org, when a proxy changes the Host or the
    # scheme: absolute links use it, and requests from it count as same-origin. Empty: links
    # are relative, and only the request's own origin is trusted.
    public_url: str = ""

    def __post_init__(self) -> None:
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"FIGSERVE_ADMIN_TOKEN must have at least {MIN_ADMIN_TOKEN} characters"
            )
        if self.public_url and not _PUBLIC_URL.match(self.public_url):
            raise ValueError(
                "FIGSERVE_PUBLIC_URL must be an origin, http(s)://host[:port] "
                f"(got {self.public_url!r})"
            )

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
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"FIGSERVE_{name.upper()}={raw!r} is not a valid {type_name}") from exc
    return raw
