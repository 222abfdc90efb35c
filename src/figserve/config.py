"""Settings for one figserve process.

Defaults live here; any of them can be overridden by an environment variable named
``FIGSERVE_<KEY>`` (read by pydantic-settings, so operators configure the shipped server without
touching code) or by the mapping passed to ``create_app`` (so tests build the app they need).
A value of the wrong type or out of range is refused at start, naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SECONDS = 1.0
DAYS = 86400 * SECONDS
MIN_ADMIN_TOKEN = 16
MIN_OWNER_SECRET = 32
PREFIX = "FIGSERVE_"
_PUBLIC_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$", re.ASCII)
_REDIS_URL = re.compile(
    r"^rediss?://(?:[^@/\s]*@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?(?:/[0-9]{1,5})?/?$",
    re.ASCII,
)


class Settings(BaseSettings):
    """Every setting, with its default and its least value; ``Settings()`` reads the
    ``FIGSERVE_*`` variables of the environment, keyword arguments override them."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        validate_default=False,
        hide_input_in_errors=True,  # a wrong URL may hold a password
    )

    # Render processes per worker for pages, images and the API (0: one per usable core). Every
    # render runs in one of them, so a worker's renders use every core whichever connection
    # brought them.
    render_processes: int = Field(0, ge=0)
    # Threads per worker that hand renders to the processes and wait on them with the GIL
    # released (0: one per render process, interactive and background).
    render_threads: int = Field(0, ge=0)
    # Renders admitted per worker (running + queued) before new ones are shed with 503 and
    # Retry-After.
    render_queue_limit: int = Field(32, ge=1)
    # Seconds a request waits for its render, and a render may run in its process: past it the
    # process is killed and replaced.
    render_timeout: float = Field(10 * SECONDS, ge=0.1)
    # Address space a render process may add to what it starts with; a render that needs more
    # fails with 422 (too complex) instead of taking the machine's memory. 0: no cap.
    render_memory_mb: int = Field(1024, ge=0)
    # A render process is replaced after this many renders, or once its resident size passes
    # render_recycle_rss_mb, so slow leaks and fragmentation never build up.
    render_recycle_after: int = Field(500, ge=1)
    render_recycle_rss_mb: int = Field(400, ge=1)
    # Render processes per worker for small tasks with their own deadline (figures' data-version
    # functions), so a slow or hung one never takes a process that draws images.
    probe_processes: int = Field(1, ge=0)
    # Drawn figures each render process keeps to update instead of drawing anew, for figures
    # that declare update= (least recently used dropped first; 0: none). Each holds its artists,
    # a few MB at most; recycling by resident size still applies.
    render_warm_figures: int = Field(4, ge=0)
    # Exact request targets of cached images each worker answers below Quart (the fast path:
    # same headers and bytes, a fraction of the CPU); 0: every request goes through Quart.
    fast_path_entries: int = Field(4096, ge=0)
    # Byte budget of the in-process LRU of deterministic (seeded) renders.
    cache_bytes: int = Field(64 * MIB, ge=0)
    # Hard cap on output pixels (width x height) of any raster image.
    max_pixels: int = Field(6_000_000, ge=2500)
    # zlib level for PNG: 3 is about as small as matplotlib's own writer at 6, in half the time.
    png_compress_level: int = Field(3, ge=0)
    # Request bodies (JSON specs, uploads) larger than this answer 413, with or without a
    # Content-Length.
    max_body_bytes: int = Field(2 * MIB, ge=1024)
    # A request body must have arrived in full this long after the request began, or the
    # request answers 408 and its connection closes: a slow sender cannot hold it open.
    body_timeout: float = Field(30 * SECONDS, ge=0.1)
    # Fields of one form (the report form has about ten per figure); more answer 413.
    max_form_fields: int = Field(500, ge=1)
    # Limits for uploaded data sets.
    max_upload_rows: int = Field(100_000, ge=1)
    max_upload_columns: int = Field(50, ge=1)
    # Render one tiny figure at start so the first visitor does not pay for font loading.
    warm_up: bool = True
    log_level: str = "INFO"
    # Background jobs. Every worker of one server must use the same directory (it holds the
    # shared job database, the results and the owner key); empty: "jobs" in figserve's state
    # folder ($STATE_DIRECTORY, else $XDG_STATE_HOME/figserve, else ~/.local/state/figserve).
    jobs_dir: str = ""
    job_max_items: int = Field(500, ge=1)
    # Jobs queued or running at once, over all workers; more answer 503.
    job_max_active: int = Field(4, ge=1)
    # Jobs queued or running at once for one client (its owner cookie; clients without one
    # share a bucket per IP address); more answer 429.
    job_max_client_active: int = Field(2, ge=1)
    job_max_output_bytes: int = Field(256 * MIB, ge=1)
    # Disk budget of all job results together. A job is admitted only if the finished results
    # plus job_max_output_bytes for it and for every job queued or running still fit; else 503.
    job_results_quota_bytes: int = Field(2 * GIB, ge=1)
    # Estimated work of one job: the output pixels of all its items together; more answer 400.
    job_max_pixels: int = Field(250_000_000, ge=1)
    # A PDF report is assembled in memory: it may hold at most this many canvas pixels in all.
    job_max_pdf_pixels: int = Field(100_000_000, ge=1)
    # Finished results (and their job records) are removed this long after the job ends.
    job_result_ttl: float = Field(3600 * SECONDS, ge=1)
    # Jobs each worker renders at once; each has a render process of its own that runs at a
    # lower priority than page renders. 0: this server takes no jobs from the queue.
    job_threads: int = Field(1, ge=0)
    # A job whose worker died while running it goes back to the queue; after this many
    # interruptions it fails instead.
    job_max_attempts: int = Field(3, ge=1)
    # How often a worker checks for queued jobs, beats the heartbeat of its own and cleans up.
    job_poll_interval: float = Field(1 * SECONDS, ge=0.01)
    # A running job whose worker has not beaten its heartbeat for this long is taken back.
    job_stale_after: float = Field(30 * SECONDS, ge=0.1)
    # Seconds a job route waits for the job store (Redis, or a job database locked by another
    # process) before it answers 503 with Retry-After.
    job_store_timeout: float = Field(2 * SECONDS, ge=0.1)
    # How long a client's job owner cookie lasts; each new job renews it.
    owner_cookie_max_age: float = Field(7 * DAYS, ge=1)
    # The secret that signs owner cookies (32 characters or more), the same on every instance;
    # empty: one is made once and kept in the jobs folder (embedded) or in Redis (scale-out).
    owner_secret: str = ""
    # Bearer token of the operator's view of every client's jobs; empty: no such view.
    admin_token: str = ""
    # The public origin, e.g. https://figs.example.org, when a proxy changes the Host or the
    # scheme: absolute links use it, and requests from it count as same-origin. Empty: links
    # are relative, and only the request's own origin is trusted.
    public_url: str = ""
    # Addresses or networks (comma-separated, e.g. 127.0.0.1 or 10.0.0.0/8) of the reverse
    # proxies in front: a request from one of them is counted for the client its
    # X-Forwarded-For names (per-client limits). Empty: the connection's address is the client.
    trusted_proxies: str = ""
    # The user's own figure modules, comma-separated dotted names imported at start from the
    # current directory or PYTHONPATH (see figserve/figures/loading.py).
    figures: str = ""
    # A folder of the user's own Jinja pages, served at /pages/<name>; empty: none.
    pages: str = ""
    # Seconds one page may take to render (in a page thread, never on the event loop); past it
    # the page answers 503. Pages also have a step budget (see docs/operations.md).
    page_timeout: float = Field(2 * SECONDS, ge=0.05)
    # Characters one page may have; a page also may build at most four times this in values.
    page_max_bytes: int = Field(4 * MIB, ge=64 * KIB)
    # Byte budget of the cache of rendered pages (gallery, figure pages, user pages), kept per
    # worker and dropped when a figure's data changes; 0: pages are rendered for every request.
    page_cache_bytes: int = Field(16 * MIB, ge=0)
    # Whether a reloader (hypercorn --reload) runs the server: a figure module that fails to
    # import then leaves a server that shows the error and recovers once the file is fixed,
    # instead of stopping the start. Unset: read from Hypercorn's command line.
    reload: bool | None = None
    # Live pages (figure(..., live=True)): Server-Sent Events streams open at once per worker;
    # past it a new stream answers 503 with Retry-After. Each needs a file descriptor.
    live_max_streams: int = Field(1000, ge=1)
    # Live streams open at once per client (see trusted_proxies); past it 429. A browser shares
    # one stream among its tabs, so this counts browsers (and tabs without that support).
    live_max_client_streams: int = Field(32, ge=1)
    # Live figures one stream may follow (the live figures of a page, or of a browser's tabs).
    live_max_figures: int = Field(64, ge=1)
    # Seconds between keep-alive comments on an idle stream (proxies close silent connections).
    live_heartbeat: float = Field(15 * SECONDS, ge=0.05)
    # A stream whose client has not taken a message for this long is closed (it reconnects
    # once it reads again), so a stalled viewer holds no slot.
    live_send_timeout: float = Field(30 * SECONDS, ge=0.1)
    # Scale-out mode: redis://host:port/db of the Redis that every instance and job worker
    # shares (render cache, jobs, results). Empty: embedded, no server needed.
    redis_url: str = ""
    # Byte budget of the render cache shared in Redis (0: no shared level); an entry may take
    # at most a sixteenth of it.
    shared_cache_bytes: int = Field(256 * MIB, ge=0)
    # Seconds a shared cache entry is kept after it was written.
    shared_cache_ttl: float = Field(DAYS, ge=1)
    # Seconds a render-cache call to Redis may take before the shared level is skipped for a
    # while (the render happens here instead).
    redis_cache_timeout: float = Field(0.5 * SECONDS, ge=0.01)

    # Live figures (``version=``): seconds a figure's version function may run in its render
    # process before the process is killed and the check counts as failed.
    version_timeout: float = Field(5 * SECONDS, ge=0.1)
    # (figure, parameters) pairs whose data version each worker keeps; the least recently used
    # unwatched pair is forgotten first, and past it with every pair watched, 503.
    version_pairs: int = Field(10_000, ge=1)
    # Version checks queued or running at once per worker; a request that needs one more and
    # has no earlier version to show answers 503 with Retry-After.
    version_checks: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"FIGSERVE_ADMIN_TOKEN must have at least {MIN_ADMIN_TOKEN} characters"
            )
        if self.owner_secret and len(self.owner_secret) < MIN_OWNER_SECRET:
            raise ValueError(
                f"FIGSERVE_OWNER_SECRET must have at least {MIN_OWNER_SECRET} characters"
            )
        if self.redis_url and not _REDIS_URL.match(self.redis_url):
            raise ValueError(
                "FIGSERVE_REDIS_URL must be redis://[[user]:password@]host[:port][/db] or "
                f"rediss://... (got {redact(self.redis_url)!r})"
            )
        proxy_networks(self.trusted_proxies)  # raises ValueError naming a wrong entry
        if self.public_url and not _PUBLIC_URL.match(self.public_url):
            raise ValueError(
                "FIGSERVE_PUBLIC_URL must be an origin, http(s)://host[:port] "
                f"(got {self.public_url!r})"
            )
        return self

    @property
    def processes(self) -> int:
        """Interactive render processes per worker, with 0 resolved to the usable cores."""
        return self.render_processes or usable_cores()

    @classmethod
    def from_env(cls, overrides: Mapping[str, Any] | None = None) -> Settings:
        """The environment's settings with ``overrides`` (by setting name) on top; a
        ``SettingsError`` names every variable or setting that is wrong."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise KeyError(f"unknown figserve settings: {', '.join(unknown)}")
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, overrides)) from None

    def updated(self, overrides: Mapping[str, Any] | None) -> Settings:
        """A copy with ``overrides`` applied and checked; unknown keys are an error."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(type(self).model_fields))
        if unknown:
            raise KeyError(f"unknown figserve settings: {', '.join(unknown)}")
        values = {**self.model_dump(), **overrides}
        try:
            return type(self).model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, overrides)) from None


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each variable at fault."""


def _describe(exc: ValidationError, overrides: Mapping[str, Any]) -> str:
    """One line per wrong setting: ``FIGSERVE_RENDER_THREADS='many': Input should be a valid
    integer`` (a setting given in code is named as such)."""
    lines = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        if not name:
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        where = f"setting {name}" if name in overrides else f"{PREFIX}{name.upper()}"
        given = error.get("input")
        shown = f"={given!r}" if isinstance(given, str | int | float | bool) else ""
        lines.append(f"{where}{shown}: {error['msg']}")
    return "; ".join(lines)


def proxy_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``FIGSERVE_TRUSTED_PROXIES`` as networks: addresses (a network of one) or CIDR blocks."""
    networks = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"FIGSERVE_TRUSTED_PROXIES: {entry[:60]!r} is not an IP address or network "
                "(e.g. 127.0.0.1, 10.0.0.0/8, ::1)"
            ) from None
    return tuple(networks)


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def redact(url: str) -> str:
    """A URL as it may be shown: without the password it may carry."""
    return re.sub(r"(://[^:@/]*:)[^@/]*@", r"\1***@", url)
