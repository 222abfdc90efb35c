"""Cheap fingerprints of matplotlib's and figserve's code and registries in a render process.

A figure can replace a function or class attribute of matplotlib (``Axes.scatter = ...``), rebind
a module attribute (``matplotlib.rcParams = ...``), swap a module in ``sys.modules`` or register
things globally (a colormap, a unit converter, a scale, a font). None of that can be undone with
certainty, so a render process whose fingerprint changed is replaced.

The fingerprint of a module or class is the list of the values in its ``__dict__``: comparing
two such lists costs one identity check per attribute (about 0.2 ms for every module and class of
matplotlib and figserve). Some changes are matplotlib's own lazy initialisation and are accepted:
an attribute that was ``None`` getting its value (``Path._unit_circle``), a submodule imported
later appearing on its package, dunder entries Python adds itself (``__slotnames__``).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

# Packages whose modules and classes are fingerprinted: the code that draws and encodes.
PACKAGES = ("matplotlib", "figserve", "mpl_toolkits")
_MISSING = object()


class _Watched:
    __slots__ = ("name", "namespace", "snapshot", "values")

    def __init__(self, name: str, namespace: Any) -> None:
        self.name = name
        self.namespace = namespace  # a module's or class's __dict__ (a dict or mappingproxy)
        self.values = list(namespace.values())
        self.snapshot = dict(namespace)


def _watched_objects() -> Iterator[tuple[str, Any]]:
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or name.split(".")[0] not in PACKAGES:
            continue
        yield name, module
        for attr, value in list(vars(module).items()):
            if (
                isinstance(value, type)
                and getattr(value, "__module__", None) == name
                and id(value) not in seen
            ):
                seen.add(id(value))
                yield f"{name}.{attr}", value


def _registries() -> list[tuple[str, Callable[[], Any]]]:
    """Global registries of matplotlib that a figure may add to: name and how to read it."""
    import matplotlib
    from matplotlib import font_manager, scale, units
    from matplotlib.projections import projection_registry

    return [
        ("units", lambda: units.registry),
        ("colormaps", lambda: getattr(matplotlib.colormaps, "_cmaps", {})),
        ("color sequences", lambda: getattr(matplotlib.color_sequences, "_color_sequences", {})),
        ("scales", lambda: getattr(scale, "_scale_mapping", {})),
        ("projections", lambda: getattr(projection_registry, "_all_projection_types", {})),
        ("fonts", lambda: font_manager.fontManager.ttflist),
        ("afm fonts", lambda: font_manager.fontManager.afmlist),
    ]


def _items(registry: Any) -> list[tuple[Any, int]]:
    if isinstance(registry, dict):
        return [(k, id(v)) for k, v in registry.items()]
    return [(None, id(v)) for v in registry]


class CodeFingerprint:
    """Taken in the fork server (shared by every fork); ``changed()`` after each task."""

    def __init__(self) -> None:
        self._watched = [_Watched(name, vars(obj)) for name, obj in _watched_objects()]
        self._modules = {
            name: module
            for name, module in sys.modules.items()
            if isinstance(module, types.ModuleType) and name.split(".")[0] in PACKAGES
        }
        self._registries = _registries()
        self._registry_items = [_items(read()) for _, read in self._registries]

    def changed(self) -> str | None:
        """What was changed (``patched matplotlib.axes._axes.Axes.scatter``), or None."""
        modules = sys.modules
        for name, module in self._modules.items():
            if modules.get(name) is not module:
                return f"replaced module {name}"
        for watched in self._watched:
            values = list(watched.namespace.values())
            if values != watched.values and (problem := _explain(watched, values)):
                return problem
        for (name, read), items in zip(self._registries, self._registry_items, strict=True):
            try:
                now = _items(read())
            except Exception:  # a registry taken apart
                return f"changed matplotlib's {name} registry"
            if now != items:
                return f"changed matplotlib's {name} registry"
        return None


def _explain(watched: _Watched, values: list[Any]) -> str | None:
    """The first change that is not lazy initialisation; None (and the snapshot moved on) if
    every change is."""
    now = dict(watched.namespace)
    for key, before in watched.snapshot.items():
        after = now.get(key, _MISSING)
        if after is before or before is None:
            continue
        plain = isinstance(before, float | int | str) and type(after) is type(before)
        if plain and after == before:
            continue
        return f"{'removed' if after is _MISSING else 'patched'} {watched.name}.{key}"
    for key in now.keys() - watched.snapshot.keys():
        value = now[key]
        if isinstance(value, types.ModuleType) or (key.startswith("__") and key.endswith("__")):
            continue
        return f"added {watched.name}.{key}"
    watched.values = values
    watched.snapshot = now
    return None
