"""The user's own pages: ``FIGSERVE_PAGES=folder`` serves ``folder/<name>.html`` at
``/pages/<name>``.

A page is a Jinja template. It may extend figserve's ``base.html`` (or a layout of its own in
the same folder; the folder is searched first) or stand alone, and it has every global of
figserve's pages, ``figure(name, **params)`` above all (see ``embed.py``). Names are plain
(letters, digits, ``-`` and ``_``, not starting with ``_``: files starting with ``_`` are
layouts and parts, never pages), and a page must lie inside the folder: no ``..``, no
absolute paths, no symlink that leads out of it. Pages are read again when they change.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from quart import Blueprint, Quart, current_app
from quart_schema import hide

from .errors import Problem

PAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}", re.ASCII)
SETTING = "FIGSERVE_PAGES"


class PagesFolderError(RuntimeError):
    """``FIGSERVE_PAGES`` names no usable folder."""


def page_file(folder: Path, name: str) -> Path | None:
    """The file of page ``name`` inside ``folder`` (resolved), or None if there is none."""
    if not PAGE_NAME.fullmatch(name):
        return None
    path = (folder / f"{name}.html").resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    return path


def page_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.html") if page_file(folder, p.stem) is not None)


def install(app: Quart, setting: str) -> Path:
    """Serve the pages of the folder ``setting``; an error now if it is no folder."""
    folder = Path(setting).expanduser().resolve()
    if not folder.is_dir():
        raise PagesFolderError(f"{SETTING}={setting!r}: no such folder ({folder})")
    env: Environment = app.jinja_env.overlay(
        loader=ChoiceLoader([FileSystemLoader(str(folder)), app.jinja_env.loader]),
        auto_reload=True,  # a page edited while the server runs is served as edited
    )
    bp = Blueprint("userpages", __name__)

    @bp.get("/pages/<name>")
    @hide
    async def page(name: str) -> str:
        path = page_file(folder, name)
        if path is None:
            listed = ", ".join(page_names(folder)[:20]) or "none yet"
            raise Problem(404, "No such page", f"There is no page {name[:40]!r}; pages: {listed}.")
        context: dict = {"page_name": name}
        await current_app.update_template_context(context)
        template = env.get_template(path.relative_to(folder).as_posix())
        return await template.render_async(context)

    app.register_blueprint(bp)
    return folder
