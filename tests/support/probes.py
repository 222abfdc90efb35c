"""Test-only probe tasks: small picklable tasks with ``run(png_level)``, as a figure's
data-version check would be."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Version:
    """Reads a version the way a figure would: a file's size and modification time."""

    path: str

    def run(self, png_level: int) -> str:
        st = os.stat(self.path)
        return f"{st.st_size}-{st.st_mtime_ns}"


@dataclass(frozen=True)
class WhoAmI:
    def run(self, png_level: int) -> int:
        return os.getpid()


@dataclass(frozen=True)
class Hang:
    """Waits without using the CPU (a database that does not answer)."""

    started: str = ""

    def run(self, png_level: int) -> None:
        if self.started:
            Path(self.started).touch()
        time.sleep(300)


@dataclass(frozen=True)
class Spin:
    def run(self, png_level: int) -> None:
        while True:
            pass


@dataclass(frozen=True)
class Broken:
    def run(self, png_level: int) -> None:
        raise ConnectionError("database unreachable")


@dataclass(frozen=True)
class NotPlain:
    def run(self, png_level: int) -> object:
        return object()
