"""What a figure's bytes depend on besides its parameters: its code version.

A figure's code version is a hash of

- the source of the modules that define it (its draw, update and version functions and its
  parameter model) and of the user's own modules those import, followed transitively;
- figserve's own source (every module of the package: the encoders, the layout helpers);
- the versions of Python, matplotlib (and its FreeType), numpy and Pillow;
- the matplotlib settings in force (``rcParams``) when it is first asked for.

No paths and no modification times go in, so two instances of one release agree, and an edit
that changes nothing (a file saved again) changes nothing. It is computed once per process and
figure, from what that process imported: a render process that runs other code than its worker
reports another version (see the renderer), and its bytes are never stored under the worker's.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import platform
import sys
import sysconfig
import threading
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import FigureSpec

DIGEST_SIZE = 16  # bytes of a version: 32 hex characters
_PACKAGE = Path(__file__).resolve().parents[1]  # figserve's own package folder
_LIBRARIES = tuple(
    Path(p).resolve()
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (p := sysconfig.get_paths().get(key))
)
# Settings of matplotlib that never change a figure's bytes but differ between processes
# (the backend is chosen lazily).
_IGNORED_RC = ("backend", "interactive", "toolbar", "webagg.", "tk.", "macosx.")
_lock = threading.Lock()
_versions: dict[tuple[str, object], str] = {}


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


@cache
def figserve_version() -> str:
    """figserve's own source, every module, by its path inside the package."""
    parts: list[bytes] = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        parts += [path.relative_to(_PACKAGE).as_posix().encode(), path.read_bytes()]
    return _digest(parts)


@cache
def platform_version() -> str:
    """figserve's source, the libraries that draw and encode, and matplotlib's settings."""
    import matplotlib
    import numpy
    import PIL
    from matplotlib import ft2font

    libraries = [
        f"python {platform.python_version()}",
        f"matplotlib {matplotlib.__version__}",
        f"freetype {ft2font.__freetype_version__}",
        f"numpy {numpy.__version__}",
        f"pillow {PIL.__version__}",
    ]
    rc = sorted(
        (key, repr(value))
        # dict's own items: RcParams' item access resolves the backend, importing pyplot.
        for key, value in dict.items(matplotlib.rcParams)
        if not key.startswith(_IGNORED_RC)
    )
    return _digest(
        [figserve_version().encode(), *(s.encode() for s in libraries), repr(rc).encode()]
    )


def figure_version(spec: FigureSpec) -> str:
    """The code version of ``spec`` in this process (computed once, then remembered)."""
    key = (spec.name, spec.draw)
    with _lock:
        known = _versions.get(key)
    if known is not None:
        return known
    modules = sorted(_own_modules(_defining_modules(spec)), key=lambda m: m.__name__)
    parts = [platform_version().encode(), spec.name.encode()]
    for module in modules:
        parts += [module.__name__.encode(), _source(module)]
    version = _digest(parts)
    with _lock:
        _versions.setdefault(key, version)
    return version


def _defining_modules(spec: FigureSpec) -> Iterator[ModuleType]:
    for obj in (spec.draw, spec.update, spec.version, spec.params):
        name = getattr(obj, "__module__", None)
        module = sys.modules.get(name) if name else None
        if module is not None:
            yield module


def _own_modules(start: Iterable[ModuleType]) -> list[ModuleType]:
    """``start`` and the user's own modules they import, transitively (figserve's own source
    and the installed libraries are in ``platform_version``)."""
    seen: dict[str, ModuleType] = {}
    todo = [m for m in start if is_users(m)]
    while todo:
        module = todo.pop()
        if module.__name__ in seen:
            continue
        seen[module.__name__] = module
        for name in _imported_names(module):
            other = sys.modules.get(name)
            if other is not None and other.__name__ not in seen and is_users(other):
                todo.append(other)
    return list(seen.values())


def is_users(module: ModuleType) -> bool:
    """A module of the user's own (see ``is_users_file``)."""
    origin = getattr(module, "__file__", None)
    return bool(origin) and is_users_file(origin)


def is_users_file(filename: str) -> bool:
    """A file of the user's own code: neither figserve's nor the standard library's nor an
    installed package's."""
    if filename.startswith("<"):
        return False  # frozen import machinery
    path = Path(filename).resolve()
    if path.is_relative_to(_PACKAGE):
        return False
    return not any(path.is_relative_to(lib) for lib in _LIBRARIES)


def _source(module: ModuleType) -> bytes:
    origin = getattr(module, "__file__", None)
    try:
        return Path(origin).read_bytes() if origin else b""
    except OSError:
        return f"unreadable {module.__name__}".encode()


def _imported_names(module: ModuleType) -> set[str]:
    """The modules a module's source imports (``import a.b``, ``from . import c``)."""
    try:
        tree = ast.parse(_source(module))
    except (SyntaxError, ValueError):
        return set()
    package = module.__package__ or ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                try:
                    base = importlib.util.resolve_name("." * node.level + base, package)
                except (ImportError, ValueError):
                    continue
            if base:
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names
