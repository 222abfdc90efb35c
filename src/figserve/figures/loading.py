"""Figures from the user's own modules: ``FIGSERVE_FIGURES=pkg.module[,other.module]``.

Each module is imported once at start, from the current directory or ``PYTHONPATH``, and
registers its figures with the documented decorator (``@FIGURES.figure(...)``), exactly as the
shipped catalog does. A module that cannot be imported stops the start with a message naming
the module and the line at fault; a module that registers nothing is an error too (it most
likely registered into a registry of its own).
"""

from __future__ import annotations

import importlib
import os
import re
import traceback

from .catalog import FIGURES
from .identity import is_users_file
from .registry import FigureSpec, Registry

SETTING = "FIGSERVE_FIGURES"
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class FigureModuleError(RuntimeError):
    """A module of ``FIGSERVE_FIGURES`` that cannot serve figures; the message says why."""


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
        raise FigureModuleError(
            f"{SETTING}: module {name!r} has a syntax error at {where}: {exc.msg}"
        ) from None
    except Exception as exc:
        for spec in _new(registry, before):
            registry.discard(spec.name)
        if isinstance(exc, ModuleNotFoundError) and exc.name and _old_package(exc.name):
            raise FigureModuleError(
                f"{SETTING}: module {name!r} imports {exc.name!r}, figserve's old package name, "
                f"{_where(exc)}; write `from figserve import FIGURES, FigureParams, "
                "SeededParams, rng_for, title_field` instead (see CHANGELOG.md)"
            ) from None
        if isinstance(exc, ModuleNotFoundError) and exc.name and _names_it(name, exc.name):
            raise FigureModuleError(
                f"{SETTING}: no module {exc.name!r} in the current directory ({os.getcwd()}) "
                "or PYTHONPATH; run the server from the folder that holds it, or add that "
                "folder to PYTHONPATH"
            ) from None
        raise FigureModuleError(
            f"{SETTING}: module {name!r} failed while importing, {_where(exc)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    # A module imported before (a second app in one process) registered its figures then.
    figures = _new(registry, before) or [s for s in registry if _names_it(name, _module(s))]
    if not figures:
        raise FigureModuleError(
            f"{SETTING}: module {name!r} registers no figure; declare each with "
            "@FIGURES.figure(...), importing FIGURES from figserve"
        )
    return figures


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
