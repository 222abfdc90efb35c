"""The shape of the code: figserve's parts import only parts below them (no cycles, nothing
running back up the layers, not even inside a function), and importing any module of figserve
builds no app and sets up no logging."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

from tests.support.live import ROOT

PACKAGE = ROOT / "src" / "figserve"
# Lowest first; a part may import the parts before it, never one after it. A new part of the
# package gets its place here.
LAYERS = [
    "client",  # the standard library only: what a user's script imports to say data changed
    "logsafe",  # the standard library only: log records that client input cannot break
    "config",
    "system",
    "stopping",  # a stopping worker: learning that its server stops, ending by a deadline
    "scaleout",
    "figures",
    "figserve",  # the package itself: what a figure module imports, and the version
    "render",
    "json_numbers",
    "validation",
    "live",
    "metrics",
    "jobs",
    "state",
    "services",
    "web",
    "startup",  # how a failed start is told: knows the errors of the parts below
    "app",
    "launch",  # figserve serve and check: run apps (named as text) under a master
    "__main__",
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _part(module: str) -> str:
    names = module.split(".")
    return names[1] if len(names) > 1 else "figserve"


def _type_checking_only(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(n) for n in ast.walk(node))
    return ids


def imports() -> dict[tuple[str, str], list[str]]:
    """(importing part, imported part) -> the modules that import so, at run time."""
    modules = _modules()
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in modules.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                name = ".".join([*base, *([node.module] if node.module else [])])
                if name.split(".")[0] == "figserve":
                    targets = [
                        f"{name}.{a.name}" if f"{name}.{a.name}" in modules else name
                        for a in node.names
                    ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "figserve"]
            for target in targets:
                if _part(module) != _part(target):
                    edges[(_part(module), _part(target))].append(module)
    return edges


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(m) for m in _modules()}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a place in LAYERS"


def test_parts_import_only_the_parts_below_them():
    upward = {
        f"{low} -> {high} (in {', '.join(sorted(set(where)))})"
        for (low, high), where in imports().items()
        if low in LAYERS and high in LAYERS and LAYERS.index(high) > LAYERS.index(low)
    }
    assert upward == set()


def _module_imports(module: str) -> set[str]:
    path = _modules()[module]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[-1])
            names.update(a.name for a in node.names)
    return names


def test_the_two_job_stores_know_nothing_of_each_other():
    sqlite_side = {"local", "local_store", "sqlite", "sqlite_file", "sqlite_schema"}
    redis_side = {"queue", "redis_store", "redis_scripts", "saq_tuning"}
    for side, other in ((sqlite_side, redis_side), (redis_side, sqlite_side)):
        for name in side:
            assert not _module_imports(f"figserve.jobs.{name}") & other, name


def test_importing_figserve_builds_no_app_and_sets_up_no_logging():
    script = textwrap.dedent(
        """
        import importlib, logging, pkgutil
        import quart
        built = []
        original = quart.Quart.__init__
        def counting(self, *args, **kwargs):
            built.append(args[0] if args else "?")
            original(self, *args, **kwargs)
        quart.Quart.__init__ = counting
        import figserve
        names = [m.name for m in pkgutil.walk_packages(figserve.__path__, "figserve.")]
        for name in names:
            if not name.endswith("__main__"):
                importlib.import_module(name)
        handlers = logging.getLogger().handlers + logging.getLogger("figserve").handlers
        print(len(names), built, handlers)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.split(" ", 1)
    assert int(out[0]) > 30  # every module was imported
    assert out[1].strip() == "[] []"
