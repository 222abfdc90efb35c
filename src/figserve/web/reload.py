"""A figure module that fails to import while a reloader runs the server.

Without a reloader, a module of ``FIGSERVE_FIGURES`` that cannot be imported stops the start:
an operator's deploy must fail where everyone sees it. Under ``hypercorn --reload`` the server
is a figure author's working loop, and a save with a typo must not end it. There the app becomes
one that answers every request with the error (an HTML page, an image for an ``<img>``,
problem+json for the API), naming the file, the line and the error, and runs no renders and
no jobs (a catalog missing the user's figures would fail their reports). It recovers by itself:

- Hypercorn's reloader (the master) watches the files of the modules *it* imported, and a
  module that failed to import is not among them; the files of the failure are added to its
  view (``watch_in_reloader``), so a fix restarts the workers;
- the worker watches them too (a file the master never imported, a helper module added since,
  one that does not exist yet) and, when one changes, ends itself with status 0, which is how
  Hypercorn's master learns to start a fresh worker that imports the fixed file.

How the app knows it runs under a reloader: ``FIGSERVE_RELOAD`` when set; otherwise from
Hypercorn's command line (``--reload``, or ``use_reloader = true`` in the TOML file given
with ``--config``). Hypercorn passes the app nothing about it, but a worker is started with its
master's command line (multiprocessing's spawn carries ``sys.argv``), and the command line is
Hypercorn's public interface; looking into its private objects would break with its releases.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import tomllib
import types
from collections.abc import Iterable, Sequence
from pathlib import Path

from quart import Quart, Response, render_template, request

from ..figures.loading import FigureModuleError
from .errors import PROBLEM_JSON, error_svg
from .static import install as install_static

log = logging.getLogger("figserve.web")

STATUS = 503
RETRY_AFTER = "2"  # seconds; the error page also looks again that often
CHECK_EVERY = 0.5  # seconds between two looks at the watched files
_STUB_PREFIX = "figserve._watched_"
_Stamp = tuple[int, int] | None


def under_reloader(setting: bool | None, argv: Sequence[str] | None = None) -> bool:
    """Whether this process serves under Hypercorn's reloader (see the module's docstring)."""
    if setting is not None:
        return setting
    args = list(sys.argv if argv is None else argv)
    if not args or not _is_hypercorn(args[0]):
        return False
    if "--reload" in args[1:]:
        return True
    config = _config_file(args[1:])
    return config is not None and _reloads(config)


def _is_hypercorn(program: str) -> bool:
    path = Path(program)
    return path.name == "hypercorn" or (
        path.name == "__main__.py" and path.parent.name == "hypercorn"
    )


def _config_file(args: Sequence[str]) -> Path | None:
    for index, arg in enumerate(args):
        value = None
        if arg in ("-c", "--config") and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith("--config="):
            value = arg.removeprefix("--config=")
        if value is not None and not value.startswith(("file:", "python:")):
            return Path(value)
    return None


def _reloads(config: Path) -> bool:
    try:
        with config.open("rb") as f:
            return bool(tomllib.load(f).get("use_reloader", False))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def watch_in_reloader(files: Iterable[Path]) -> None:
    """Make Hypercorn's reloader watch ``files`` too: it watches the file of every module in
    ``sys.modules``, so each existing file gets a module there that stands for it."""
    for path in files:
        if not path.is_file():
            continue  # the reloader would take a file that is missing for one that changed
        key = _STUB_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        stub = types.ModuleType(key, f"Stands for {path} in the reloader's view.")
        stub.__file__ = str(path)
        sys.modules[key] = stub


def _stamps(files: Sequence[Path]) -> list[_Stamp]:
    out: list[_Stamp] = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return out


async def restart_when_changed(files: Sequence[Path], every: float = CHECK_EVERY) -> None:
    """Return once one of ``files`` changes, appears or disappears."""
    seen = _stamps(files)
    while _stamps(files) == seen:
        await asyncio.sleep(every)


def serve_the_error(error: FigureModuleError, templates: Path, static: Path) -> Quart:
    """The app of a server whose figure module failed under a reloader (see the docstring)."""
    watch_in_reloader(error.files)
    app = Quart(__name__, template_folder=str(templates), static_folder=None)
    static_files = install_static(app, static)
    message = str(error)
    log.error("%s; serving this error until the file changes (reload mode)", message)
    watcher: list[asyncio.Task[None]] = []

    async def _end_this_worker() -> None:
        await restart_when_changed(error.files)
        log.info("a watched file changed: this worker ends, the reloader starts a new one")
        # Status 0 tells Hypercorn's master to start a new worker (any other stops it all).
        # This app holds no renders, jobs or processes of its own to finish first; at most an
        # error page is on its way, and its client looks again anyway.
        for handler in logging.getLogger("figserve").handlers:
            handler.flush()
        os._exit(0)

    @app.before_serving
    async def _watch() -> None:
        if error.files:
            watcher.append(asyncio.get_running_loop().create_task(_end_this_worker()))

    @app.after_serving
    async def _stop_watching() -> None:
        for task in watcher:
            task.cancel()

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS)
    async def everything(path: str) -> Response:
        if path in ("healthz", "favicon.ico"):
            return Response(b"ok\n" if path == "healthz" else b"", status=200 if path else 204)
        headers = {"Cache-Control": "no-store", "Retry-After": RETRY_AFTER}
        kind = _kind(path)
        if kind == "svg":
            w, h = _box()
            body = error_svg(message, STATUS, w, h)
            return Response(body, STATUS, headers, mimetype="image/svg+xml")
        if kind == "html":
            html = await render_template(
                "broken.html", message=message, module=error.module, files=error.files
            )
            headers["Content-Security-Policy"] = static_files.html_csp()
            return Response(html, STATUS, headers, mimetype="text/html")
        body = _problem_json(message)
        return Response(body, STATUS, headers, mimetype=PROBLEM_JSON)

    return app


_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _kind(path: str) -> str:
    """An image for an image URL that a browser's ``<img>`` asks for, a page for a browser
    navigating, problem+json for the rest (curl, programs)."""
    best = request.accept_mimetypes.best_match(
        [PROBLEM_JSON, "application/json", "text/html", "image/svg+xml"]
    )
    if best == "image/svg+xml" and path.startswith(("figures/", "fig/")):
        return "svg"
    return "html" if best == "text/html" else "json"


def _box() -> tuple[int, int]:
    w, h = request.args.get("w", ""), request.args.get("h", "")
    if w.isascii() and w.isdigit() and h.isascii() and h.isdigit():
        width, height = int(w[:5]), int(h[:5])
        if 50 <= width <= 3000 and 50 <= height <= 3000:
            return width, height
    return 400, 300


def _problem_json(message: str) -> str:
    title = "Figure module failed to load"
    return json.dumps({"type": "about:blank", "title": title, "status": STATUS, "detail": message})
