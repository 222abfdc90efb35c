"""Figures from the user's own modules: ``FIGSERVE_FIGURES=pkg.module[,other.module]``.

Each module is imported once at start, from the current directory or ``PYTHONPATH``, and
registers its figures with the documented decorator (``@FIGURES.figure(...)``), exactly as the
shipped catalog does. A module that cannot be imported stops the start with a message naming
the module and the line at fault; a module that registers nothing is an error too (it most
likely registered into a registry of its own).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from .catalog import FIGURES
from .identity import is_users_file
from .registry import FigureSpec, Registry

SETTING = "FIGSERVE_FIGURES"
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class FigureModuleError(RuntimeError):
    """A module of ``FIGSERVE_FIGURES`` that cannot serve figures; the message says why.

    ``files`` are the user's files that a fix would touch: the module's own, the one where the
    error is, and those its traceback passed through (some may not exist yet: a module that
    is not found is looked for there). A reloader watches them (see ``web/reload.py``)."""

    def __init__(self, message: str, module: str = "", files: Iterable[Path] = ()) -> None:
        super().__init__(message)
        self.module = module
        self.files = tuple(dict.fromkeys(files))


def module_names(setting: str) -> list[str]:
    """The module names of a ``FIGSERVE_FIGURES`` value, in order, each once."""
    names: list[str] = []
    for raw in setting.split(","):
        name = raw.strip()
        if not name:
            continue
        if not _MODULE_NAME.fullmatch(name) or name.endswith(".py"):
            raise FigureModuleError(
                f"{SETTING}: {name[:80]!r} is not a module name; give dotted Python module "
                "names such as myfigures or mypackage.figures (no .py), separated by commas"
            )
        if name not in names:
            names.append(name)
    return names


def load_figure_modules(setting: str, registry: Registry = FIGURES) -> list[FigureSpec]:
    """Import every module of ``setting``; the figures they registered in ``registry``."""
    loaded: list[FigureSpec] = []
    for name in module_names(setting):
        loaded += _load(name, registry)
    return loaded


def _load(name: str, registry: Registry) -> list[FigureSpec]:
    before = {spec.name for spec in registry}
    try:
        importlib.import_module(name)
    except SyntaxError as exc:  # IndentationError too
        for spec in _new(registry, before):
            registry.discard(spec.name)
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        code = f" ({exc.text.strip()})" if exc.text and exc.text.strip() else ""
        files = _files(name, exc, [exc.filename] if exc.filename else [])
        own = not exc.filename or (files and files[0] == Path(exc.filename).resolve())
        what = "has a syntax error" if own else "failed while importing: a syntax error"
        raise FigureModuleError(
            f"{SETTING}: module {name!r} {what} at {where}{code}: {exc.msg}", name, files
        ) from None
    except Exception as exc:
        for spec in _new(registry, before):
            registry.discard(spec.name)
        if isinstance(exc, ModuleNotFoundError) and exc.name and _old_package(exc.name):
            raise FigureModuleError(
                f"{SETTING}: module {name!r} imports {exc.name!r}, figserve's old package name, "
                f"{_where(exc)}; write `from figserve import FIGURES, FigureParams, "
                "SeededParams, rng_for, title_field` instead (see CHANGELOG.md)",
                name,
                _files(name, exc),
            ) from None
        if isinstance(exc, ModuleNotFoundError) and exc.name and _names_it(name, exc.name):
            raise FigureModuleError(
                f"{SETTING}: no module {exc.name!r} in the current directory ({os.getcwd()}) "
                "or PYTHONPATH; run the server from the folder that holds it, or add that "
                "folder to PYTHONPATH",
                name,
                _files(name, exc, _candidates(exc.name)),
            ) from None
        raise FigureModuleError(
            f"{SETTING}: module {name!r} failed while importing, {_where(exc)}: "
            f"{type(exc).__name__}: {exc}",
            name,
            _files(name, exc),
        ) from exc
    # A module imported before (a second app in one process) registered its figures then.
    figures = _new(registry, before) or [s for s in registry if _names_it(name, _module(s))]
    if not figures:
        raise FigureModuleError(
            f"{SETTING}: module {name!r} registers no figure; declare each with "
            "@FIGURES.figure(...), importing FIGURES from figserve"
        )
    return figures


def _files(name: str, exc: BaseException, more: Iterable[str | Path] = ()) -> list[Path]:
    """The user's files a fix of this failure would touch (see ``FigureModuleError``)."""
    found = [Path(p) for p in more]
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a parent package that fails itself, or none
        spec = None
    if spec is not None and spec.origin and spec.has_location:
        found.insert(0, Path(spec.origin))
    found += [Path(f.filename) for f in traceback.extract_tb(exc.__traceback__)]
    return [p.resolve() for p in found if is_users_file(str(p))]


def _candidates(missing: str) -> list[Path]:
    """Where a module that was not found would be: ``<folder>/<name>.py`` or a package, in
    each of the user's own folders of the import path."""
    top = missing.split(".")[0]
    folders = [Path(entry or os.getcwd()) for entry in sys.path]
    return [
        path
        for folder in folders
        if is_users_file(str(folder / top)) and folder.is_dir()
        for path in (folder / f"{top}.py", folder / top / "__init__.py")
    ]


def _old_package(module: str) -> bool:
    """Whether ``module`` is one of figserve's names before it became the package
    ``figserve`` (``src.figures`` and the like)."""
    return module == "src" or module.startswith("src.")


def _new(registry: Registry, before: set[str]) -> list[FigureSpec]:
    return [spec for spec in registry if spec.name not in before]


def _module(spec: FigureSpec) -> str:
    return spec.draw.__module__


def _names_it(name: str, module: str) -> bool:
    """Whether ``module`` is ``name`` or a package or module inside it."""
    return name == module or name.startswith(module + ".") or module.startswith(name + ".")


def _where(exc: BaseException) -> str:
    """``at <file>, line <n> (<code>)``: the last line of the user's own code the error
    passed through (not figserve's, not the standard library's or an installed package's)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if is_users_file(f.filename)]
    frame = (own or frames or [None])[-1]
    if frame is None:
        return "before any line ran"
    code = f" ({frame.line.strip()})" if frame.line else ""
    return f"at {frame.filename}, line {frame.lineno}{code}"
