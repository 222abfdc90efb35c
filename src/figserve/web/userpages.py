"""The user's own pages: ``FIGSERVE_PAGES=folder`` serves ``folder/<name>.html`` at
``/pages/<name>``.

A page is a Jinja template. It may extend figserve's ``base.html`` (or a layout of its own in
the same folder; the folder is searched first) or stand alone. It sees ``figure(name,
**params)`` (see ``embed.py``), ``url_for``, ``page_name``, and ``request`` with the page's
``path`` and query ``args``. Names are plain (letters, digits, ``-`` and ``_``, not starting with
``_``: files starting with ``_`` are layouts and parts, never pages), and a page must lie inside
the folder: no ``..``, no absolute paths, no link that leads out of it or to a part.

Every template of the folder is compiled at start, so a syntax error stops the start naming the
file and the line. Pages render in a page thread inside a bounded sandbox (``sandbox.py``) and
are cached until a template they used changes (``pagecache.py``); a page that fails answers
with an error page naming the template and the line.
"""

from __future__ import annotations

import re
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, Template, TemplateSyntaxError
from jinja2.defaults import DEFAULT_FILTERS
from quart import Blueprint, Quart, request, url_for
from quart_schema import hide
from werkzeug.datastructures import MultiDict

from .embed import figure
from .errors import Problem
from .pagecache import Built, Dep, page_service, respond, stamp
from .sandbox import BoundedEnvironment, PageTooComplex, render_bounded
from .state import app_state

PAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}", re.ASCII)
SETTING = "FIGSERVE_PAGES"
MAX_TEMPLATES = 2000  # templates of a pages folder compiled at start
# Globals a page does not get: the request's state (the cache keys on the page's path and query
# only), and Jinja's own that the sandbox replaces with bounded ones.
_NOT_FOR_PAGES = frozenset(
    {"config", "request", "session", "g", "get_flashed_messages", "range", "lipsum"}
)
_USED: ContextVar[list[str] | None] = ContextVar("figserve_templates_used", default=None)


class PagesFolderError(RuntimeError):
    """``FIGSERVE_PAGES`` names no usable folder, or a template in it cannot compile."""


@dataclass(frozen=True)
class PageRequest:
    """What a page may know of its request; the page cache keys on exactly this."""

    path: str
    args: MultiDict


def page_file(folder: Path, name: str) -> Path | None:
    """The file of page ``name`` inside ``folder`` (resolved), or None if there is none."""
    if not PAGE_NAME.fullmatch(name):
        return None
    path = (folder / f"{name}.html").resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    # A link is served only if what it leads to could be served itself: an .html file, and
    # no part of its path a private (``_``) or hidden (``.``) one.
    inside = path.relative_to(folder).parts
    if path.suffix != ".html" or any(part[:1] in {"_", "."} for part in inside):
        return None
    return path


def page_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.html") if page_file(folder, p.stem) is not None)


class _PagesEnvironment(BoundedEnvironment):
    """The sandbox, noting every template a render loads (the page cache checks them)."""

    def get_template(self, name: Any, parent: Any = None, globals: Any = None) -> Template:
        template = super().get_template(name, parent, globals)
        _note(template)
        return template

    def select_template(self, names: Any, parent: Any = None, globals: Any = None) -> Template:
        template = super().select_template(names, parent, globals)
        _note(template)
        return template


def _note(template: Template) -> None:
    used = _USED.get()
    if used is not None and template.filename:
        used.append(template.filename)


def environment(app: Quart, folder: Path) -> BoundedEnvironment:
    """The sandboxed environment of a pages folder (figserve's templates second), with
    figserve's own globals and filters but none that reach the request's state."""
    own_filters = {k: v for k, v in app.jinja_env.filters.items() if k not in DEFAULT_FILTERS}
    own_globals = {k: v for k, v in app.jinja_env.globals.items() if k not in _NOT_FOR_PAGES}
    return _PagesEnvironment(
        ChoiceLoader([FileSystemLoader(str(folder)), app.jinja_env.loader]),
        globals={**own_globals, "figure": figure, "url_for": url_for},
        filters=own_filters,
    )


def check_templates(env: BoundedEnvironment, folder: Path) -> int:
    """Compile every template of ``folder``; a ``PagesFolderError`` names the first that fails."""
    files = sorted(p for p in folder.rglob("*.html") if p.is_file())
    if len(files) > MAX_TEMPLATES:
        raise PagesFolderError(
            f"{SETTING}: {len(files)} templates in {folder}; at most {MAX_TEMPLATES}"
        )
    for path in files:
        relative = path.relative_to(folder).as_posix()
        try:
            env.get_template(relative)
        except TemplateSyntaxError as exc:
            raise PagesFolderError(
                f"{SETTING}: {relative}, line {exc.lineno}: {exc.message}"
            ) from None
        except RecursionError:
            raise PagesFolderError(f"{SETTING}: {relative} is nested too deeply") from None
        except Exception as exc:
            raise PagesFolderError(f"{SETTING}: {relative}: {exc}") from None
    return len(files)


def install(app: Quart, setting: str) -> Path:
    """Serve the pages of the folder ``setting``; an error now if it is no folder, or if a
    template in it does not compile."""
    folder = Path(setting).expanduser().resolve()
    if not folder.is_dir():
        raise PagesFolderError(f"{SETTING}={setting!r}: no such folder ({folder})")
    env = environment(app, folder)
    check_templates(env, folder)
    bp = Blueprint("userpages", __name__)

    @bp.get("/pages/<name>")
    @hide
    async def page(name: str) -> Any:
        path = page_file(folder, name)
        if path is None:
            listed = ", ".join(page_names(folder)[:20]) or "none yet"
            raise Problem(404, "No such page", f"There is no page {name[:40]!r}; pages: {listed}.")
        service = page_service()
        view = PageRequest(request.path, MultiDict(request.args))
        key = ("page", name, request.query_string, app_state().page_generation())

        def build() -> Built:
            used: list[str] = []
            token = _USED.set(used)
            try:
                template = env.get_template(path.relative_to(folder).as_posix())
                context = {"page_name": name, "request": view}
                html = render_bounded(template, context, service.limits, service.pause)
                return Built(html, deps=_deps(used, folder))
            except PageTooComplex as exc:
                return _too_complex(name, exc, _deps(used, folder))
            except Exception as exc:
                return _failed(name, exc, folder, _deps(used, folder))
            finally:
                _USED.reset(token)

        return await respond(await service.page(key, build))

    app.register_blueprint(bp)
    return folder


def _deps(used: list[str], folder: Path) -> tuple[Dep, ...]:
    # The folder itself too: a template added or removed there changes its mtime.
    return tuple(stamp(p) for p in dict.fromkeys([*used, str(folder)]))


def _too_complex(name: str, exc: PageTooComplex, deps: tuple[Dep, ...]) -> Built:
    if exc.transient:
        problem = Problem(
            503,
            "Page took too long",
            f"The page {name!r} did not finish: {exc}. Try again shortly.",
            headers={"Retry-After": "2"},
        )
        return Built(problem=problem, deps=deps, keep=False)
    detail = f"The page {name!r} was stopped: {exc}."
    return Built(problem=Problem(422, "Page too complex", detail), deps=deps)


def _failed(name: str, exc: BaseException, folder: Path, deps: tuple[Dep, ...]) -> Built:
    where = _where(exc, folder)
    message = exc.message if isinstance(exc, TemplateSyntaxError) else str(exc)
    detail = f"The page {name!r} failed at {where}: {type(exc).__name__}: {message[:200]}"
    return Built(problem=Problem(500, "Page failed", detail), deps=deps)


def _where(exc: BaseException, folder: Path) -> str:
    """``<template>, line <n>``: the template line where a render failed."""
    if isinstance(exc, TemplateSyntaxError):
        filename, line = exc.filename or exc.name or "?", exc.lineno
    else:
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".html")
        ]
        if not frames:
            return "an unknown line"
        filename, line = frames[-1].filename, frames[-1].lineno
    path = Path(filename)
    shown = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
    return f"{shown}, line {line}"
