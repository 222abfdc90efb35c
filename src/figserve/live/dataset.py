"""A small helper for figures of one data source: load it once per version, share it.

::

    from figserve import FIGURES, FigureParams, Dataset, files_version

    def load_sales():                      # module-level functions: they travel to render
        return read_the_csv("sales.csv")   # processes by reference, like draw functions

    SALES = Dataset(load_sales, version=files_version("sales.csv"))

    @FIGURES.figure("sales", ..., version=SALES.version, refresh=5)
    def sales(fig, p):
        table = SALES.get()                # loaded once per version in each render process

Every figure that uses ``SALES`` shares the loaded data and the version: a change of the file
gives each of them a new version at once, and the data is read again once per render process,
not once per image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FilesVersion:
    """The version of some files: each one's modification time and size (one ``stat`` each,
    never their content). A file that does not exist counts as a version too."""

    paths: tuple[str, ...]

    def __call__(self, params: Any = None) -> str:
        parts = []
        for path in self.paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                parts.append("missing")
            else:
                parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        return " ".join(parts)


def files_version(*paths: str | os.PathLike[str]) -> FilesVersion:
    """A version function for figures that read these files (absolute paths are kept, so a
    render process finds them whatever its working directory)."""
    if not paths:
        raise ValueError("files_version() needs at least one path")
    return FilesVersion(tuple(os.path.abspath(os.fspath(p)) for p in paths))


class Dataset(Generic[T]):
    """Data that several figures draw: ``load()`` runs once per version in each process that
    calls ``get()``; ``version`` (a function of no arguments) says which version is current."""

    def __init__(self, load: Callable[[], T], *, version: Callable[[], Any]) -> None:
        self._load = load
        self._version = version
        self._loaded: tuple[Any, T] | None = None

    def version(self, params: Any = None) -> Any:
        """The data's version: give ``version=dataset.version`` to each figure that uses it
        (the same for every parameter)."""
        return self._version()

    def get(self) -> T:
        """The data, loaded again only when its version changed since this process loaded it."""
        current = self.version()
        loaded = self._loaded
        if loaded is None or loaded[0] != current:
            loaded = self._loaded = (current, self._load())
        return loaded[1]

    def __getstate__(self) -> dict[str, Any]:
        # Sent to a render process to ask its version: the loaded data stays where it is.
        return {"_load": self._load, "_version": self._version, "_loaded": None}
