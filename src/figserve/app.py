"""The Quart app of figserve: ``create_app`` builds one.

Nothing here builds an app at import: the checkout's thin ``src/app.py`` does, for
``hypercorn --config hypercorn.toml src.app:app``, and ``python -m figserve serve`` calls
``create_app`` itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from quart import Quart, Response
from quart_schema import QuartSchema

from . import __version__
from . import metrics as metrics_module
from .config import Settings
from .figures import FIGURES, Registry
from .figures.loading import FigureModuleError, load_figure_modules
from .jobs import JobRunner
from .live.serving import serving_versions
from .metrics import Metrics
from .render import Renderer
from .render.serving import serving_renderer
from .web import (
    api,
    body,
    changes,
    embed,
    jobs,
    live,
    ops,
    pages,
    security,
    static,
    transfer,
    userpages,
)
from .web.asgi import guard
from .web.errors import register_error_handlers
from .web.fastpath import FastPath
from .web.images import create_images_blueprint
from .web.openapi import FigserveOpenAPI
from .web.reload import serve_the_error, under_reloader
from .web.state import AppState

PACKAGE = Path(__file__).resolve().parent
# A checkout keeps templates/ at its top; `pip install .` puts them inside the package.
TEMPLATES = next(
    (p for p in (PACKAGE / "templates", PACKAGE.parents[1] / "templates") if p.is_dir()),
    PACKAGE / "templates",
)
STATIC = PACKAGE / "static"
VERSION = __version__


def create_app(config: dict[str, Any] | None = None) -> Quart:
    """Build the app. ``config`` overrides settings by name (see ``figserve/config.py``); the key
    ``registry`` replaces the figure catalog (tests register extra figures that way)."""
    config = dict(config or {})
    custom: Registry | None = config.pop("registry", None)
    settings = Settings.from_env(config)
    _configure_logging(settings.log_level)
    _check_package_data()
    try:
        registry = _with_user_figures(custom, settings)
    except FigureModuleError as exc:
        if not under_reloader(settings.reload):
            raise
        return serve_the_error(exc, TEMPLATES, STATIC)  # until the file is fixed

    app = Quart(__name__, template_folder=str(TEMPLATES), static_folder=None)
    transfer.install(app)  # first installed, so it runs last: validators, compression, 304s
    static_files = static.install(app, STATIC)  # fingerprinted static files, inline CSS
    body.install(app, settings)  # body, form and time limits of every request
    embed.install(app)  # figure(name, **params) in every page
    state = AppState(settings=settings, registry=registry)
    app.extensions["figserve"] = state

    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # the hosted UIs load scripts from CDNs; /docs is served locally
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "figserve", "version": VERSION},
        openapi_provider_class=FigserveOpenAPI,
    )
    app.register_blueprint(pages.bp)
    app.register_blueprint(create_images_blueprint(registry))
    app.register_blueprint(api.bp)
    app.register_blueprint(changes.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(live.bp)
    if settings.pages:
        userpages.install(app, settings.pages)
    register_error_handlers(app)
    security.install(app, settings)  # cross-site refusal, relative redirects, no-store default
    metrics_module.install(app, lambda: state.metrics)
    app.asgi_app = guard(app.asgi_app, body_timeout=settings.body_timeout)  # type: ignore[method-assign]
    # Outermost: cached images (and their 304s) answered before anything else runs.
    app.asgi_app = state.fast = FastPath(app.asgi_app, state, settings.fast_path_entries)  # type: ignore[method-assign]

    # Each long-lived service is one function: it starts the service, yields while the app
    # serves, then stops it. They start in this order and stop in the reverse one (jobs before
    # the renderer they use), each time the app serves.
    @asynccontextmanager
    async def _signals() -> AsyncIterator[None]:
        _sigterm_stops_the_server()
        yield

    @asynccontextmanager
    async def _metrics() -> AsyncIterator[None]:
        state.metrics = Metrics.start()
        try:
            yield
        finally:
            state.metrics.stop()
            state.metrics = None

    @asynccontextmanager
    async def _renderer() -> AsyncIterator[None]:
        async with serving_renderer(settings, registry, state.metrics) as renderer:
            state.renderer = renderer
            try:
                yield
            finally:
                # The render processes are killed: renders still running end with a 503.
                state.renderer = None

    @asynccontextmanager
    async def _versions() -> AsyncIterator[None]:
        assert state.renderer is not None
        async with serving_versions(settings, registry, state.renderer, state.metrics) as v:
            state.versions = v
            try:
                yield
            finally:
                state.versions = None

    @asynccontextmanager
    async def _jobs() -> AsyncIterator[None]:
        assert state.renderer is not None
        if settings.redis_url:
            async with _queued_jobs(settings, registry, state.renderer) as service:
                state.jobs = service
                try:
                    yield
                finally:
                    state.jobs = None
            return
        runner = JobRunner(settings, registry, state.renderer)
        await runner.start()
        state.jobs = runner
        try:
            yield
        finally:
            # Running jobs go back to the queue with their progress.
            state.jobs = None
            await runner.close()

    def _streams() -> AbstractAsyncContextManager[None]:
        return live.service(state)  # live pages' streams, stopped first

    serving: list[AsyncExitStack] = []

    @app.before_serving
    async def _start_services() -> None:
        async with AsyncExitStack() as stack:
            for service in (_signals, _metrics, _renderer, _versions, _jobs, _streams):
                await stack.enter_async_context(service())
            # Started: keep them running until serving stops (a failed start stops those
            # already started, on leaving this block).
            serving.append(stack.pop_all())

    @app.after_serving
    async def _stop_services() -> None:
        while serving:
            await serving.pop().aclose()

    @app.after_request
    async def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", static_files.html_csp())
        return response

    return app


def _check_package_data() -> None:
    """Templates and static files travel with the package; say so plainly if they did not."""
    for folder, needed in ((TEMPLATES, "base.html"), (STATIC, "style.css")):
        if not (folder / needed).is_file():
            raise RuntimeError(
                f"figserve's {folder.name} folder is missing ({folder}): install figserve with "
                "its package data (pip install . from a checkout), or run it from a checkout"
            )


def _with_user_figures(custom: Registry | None, settings: Settings) -> Registry:
    """The catalog with the figures of ``FIGSERVE_FIGURES``; they register into the shipped
    ``FIGURES`` (the documented decorator), and join a test's own registry too."""
    own = load_figure_modules(settings.figures)
    if custom is None:
        return FIGURES
    for spec in own:
        if custom.get(spec.name) is not spec:
            custom.add(spec)
    return custom


@asynccontextmanager
async def _queued_jobs(
    settings: Settings, registry: Registry, renderer: Renderer
) -> AsyncIterator[Any]:
    """Scale-out jobs: the service the routes use, and this worker's SAQ job workers unless
    FIGSERVE_JOB_THREADS=0 (then standalone job workers do all the work)."""
    from .jobs.queue import JobWorkers, QueuedJobs

    service = QueuedJobs(settings)
    await service.start()
    workers = None
    try:
        if settings.job_threads:
            workers = JobWorkers(settings, registry, renderer)
            await workers.start()
        yield service
    finally:
        # Running tasks finish within the grace time or go back to their queue.
        if workers is not None:
            await workers.close()
        await service.close()


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("figserve")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _sigterm_stops_the_server() -> None:
    """In a Hypercorn worker, leave a SIGTERM to the master, which stops every worker gracefully.

    Hypercorn stops gracefully when its master gets SIGTERM, but a worker that gets SIGTERM
    itself (``kill -- -PGID``, systemd's KillMode=control-group, or the master's own
    ``terminate()`` of the remaining workers once one has exited) dies at once, dropping every
    in-flight response. So while its master runs, a worker ignores its own SIGTERM: the master got
    one too (process group) or is already stopping the workers, and it tells every worker to stop
    accepting and finish in-flight requests within ``graceful_timeout``. The worker must not
    signal the master itself: a second SIGTERM arriving inside the master's handler deadlocks it
    on the lock of the shared shutdown event.
    """
    parent = multiprocessing.parent_process()
    if parent is None or threading.current_thread() is not threading.main_thread():
        return  # not a spawned worker: Hypercorn (or the caller) handles signals itself
    master = parent.pid

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getppid() == master:
            logging.getLogger("figserve").info(
                "worker %d got SIGTERM: the master %d stops the workers gracefully",
                os.getpid(),
                master,
            )
        else:  # orphaned: nobody will tell this worker to stop, so stop now
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
