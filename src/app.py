"""figserve: matplotlib figures rendered on the server, served as real image URLs.

``create_app`` builds the Quart app; ``app`` at the bottom is what Hypercorn serves:
``hypercorn --config hypercorn.toml src.app:app``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from quart import Quart, Response
from quart_schema import QuartSchema

from .config import Settings
from .figures import FIGURES, Registry
from .render import Renderer
from .web import api, ops, pages
from .web.errors import register_error_handlers
from .web.images import create_images_blueprint
from .web.openapi import FigserveOpenAPI
from .web.state import AppState

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"

HTML_CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"


def create_app(config: dict[str, Any] | None = None) -> Quart:
    """Build the app. ``config`` overrides settings by name (see ``src/config.py``); the key
    ``registry`` replaces the figure catalog (tests register extra figures that way)."""
    config = dict(config or {})
    registry: Registry = config.pop("registry", None) or FIGURES
    settings = Settings.from_env().updated(config)
    _configure_logging(settings.log_level)

    app = Quart(__name__, template_folder=str(ROOT / "templates"), static_folder="static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = 3600
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
    app.register_blueprint(ops.bp)
    register_error_handlers(app)

    @app.before_serving
    async def _start_renderer() -> None:
        renderer = Renderer(settings)
        state.renderer = renderer
        first = next(iter(registry), None)
        if settings.warm_up and first is not None:
            await renderer.warm_up(first)
        renderer.ready = True

    @app.after_serving
    async def _stop_renderer() -> None:
        renderer, state.renderer = state.renderer, None
        if renderer is not None:
            await renderer.close()

    @app.after_request
    async def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", HTML_CSP)
        return response

    return app


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("figserve")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


app = create_app()
