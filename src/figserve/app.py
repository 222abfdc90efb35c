"""The Quart app of figserve: ``create_app`` builds one.

Nothing here builds an app at import: the checkout's thin ``src/app.py`` does, for
``hypercorn --config hypercorn.toml src.app:app``, and ``python -m figserve serve`` calls
``create_app`` itself.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from quart import Quart, Response
from quart_schema import QuartSchema

from . import __version__, logsafe, startup, stopping
from . import metrics as metrics_module
from .config import Settings
from .figures import FIGURES, Registry
from .figures.loading import FigureModuleError, load_figure_modules
from .services import SERVICES
from .state import AppState
from .web import (
    api,
    body,
    changes,
    embed,
    jobs,
    live,
    ops,
    pagecache,
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

PACKAGE = Path(__file__).resolve().parent
# A checkout keeps templates/ at its top; `pip install .` puts them inside the package.
TEMPLATES = next(
    (p for p in (PACKAGE / "templates", PACKAGE.parents[1] / "templates") if p.is_dir()),
    PACKAGE / "templates",
)
STATIC = PACKAGE / "static"
VERSION = __version__
# Seconds the app's services may take to stop (jobs hand their items back, render processes
# are killed) before a stopping worker is killed.
SHUTDOWN_SECONDS = 10.0


@startup.reported
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
    state = AppState(settings=settings, registry=registry)
    app = Quart(__name__, template_folder=str(TEMPLATES), static_folder=None)
    app.logger.addFilter(startup.ALREADY_REPORTED)  # a failed start is said once, last
    app.extensions["figserve"] = state
    _install_web(app, state)

    @app.while_serving
    async def _serve() -> AsyncIterator[None]:
        # The services start in order and stop in the reverse one (a failed start stops those
        # already started). An app serves once: tests and workers each build their own.
        async with await _start_services(state):
            # What the start built lives as long as the worker: keep it out of the
            # collector's full passes, which would pause the event loop for a long time.
            gc.freeze()
            yield
            stopping.arm(SHUTDOWN_SECONDS + stopping.MARGIN, "its app began to stop")

    return app


@startup.reported
async def _start_services(state: AppState) -> AsyncExitStack:
    """Every service started; a failure stops those already started, then is reported."""
    async with AsyncExitStack() as services:
        for service in SERVICES:
            await services.enter_async_context(service(state))
        return services.pop_all()


def _install_web(app: Quart, state: AppState) -> None:
    """Routes, request limits, error pages and response headers: everything HTTP."""
    settings = state.settings
    transfer.install(app)  # first installed, so it runs last: validators, compression, 304s
    static_files = static.install(app, STATIC)  # fingerprinted static files, inline CSS
    body.install(app, settings)  # body, form and time limits of every request
    embed.install(app)  # figure(name, **params) in every page
    pagecache.install(app, state)  # pages built in a page thread, and cached
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # the hosted UIs load scripts from CDNs; /docs is served locally
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "figserve", "version": VERSION},
        openapi_provider_class=FigserveOpenAPI,
    )
    images = create_images_blueprint(state.registry)
    for blueprint in (pages.bp, images, api.bp, changes.bp, ops.bp, jobs.bp, live.bp):
        app.register_blueprint(blueprint)
    if settings.pages:
        userpages.install(app, settings.pages)
    register_error_handlers(app)
    security.install(app, settings)  # cross-site refusal, relative redirects, no-store default
    metrics_module.install(app, lambda: state.metrics)

    @app.after_request
    async def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", static_files.html_csp())
        return response

    app.asgi_app = guard(  # type: ignore[method-assign]
        app.asgi_app, body_timeout=settings.body_timeout, max_body_bytes=settings.max_body_bytes
    )
    # Outermost: cached images (and their 304s) answered before anything else runs.
    app.asgi_app = state.fast = FastPath(  # type: ignore[method-assign]
        app.asgi_app, state, settings.fast_path_entries
    )


def _check_package_data() -> None:
    """Templates and static files travel with the package; say so plainly if they did not."""
    for folder, needed in ((TEMPLATES, "base.html"), (STATIC, "style.css")):
        if not (folder / needed).is_file():
            raise startup.StartError(
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


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("figserve")
    logger.setLevel(level.upper())
    if not logger.handlers:
        logger.addHandler(logsafe.handler())  # one escaped, bounded line per record
        logger.propagate = False
    logsafe.install()  # Hypercorn's access and error logs too
