"""A user's own folder of figure modules and pages, written by a test and forgotten after it.

User modules register into the shipped ``FIGURES`` (the documented decorator) and stay in
``sys.modules``; ``UserFolder.forget`` takes both back, so the next test sees the shipped
catalog only.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from figserve.figures import FIGURES

# A complete user module: one seeded figure, as the README shows it.
SPIRAL = """
    from __future__ import annotations

    import numpy as np
    from matplotlib.figure import Figure
    from pydantic import Field

    from figserve import FIGURES, SeededParams, rng_for, title_field


    class {cls}(SeededParams):
        turns: int = Field(3, ge=1, le=20, description="Number of turns.")
        title: str = title_field()


    @FIGURES.figure("{name}", title="{title}", description="A noisy spiral.",
                    alt="Spiral of {{turns}} turns", params={cls})
    def {name}(fig: Figure, p: {cls}) -> None:
        t = np.linspace(0, 2 * np.pi * p.turns, 200)
        fig.add_subplot(projection="polar").plot(t, t + rng_for(p).normal(0, 0.3, t.size))
"""


def spiral_module(name: str = "myspiral", title: str = "My spiral") -> str:
    cls = "".join(part.title() for part in name.split("_")) + "Params"
    return textwrap.dedent(SPIRAL.format(name=name, cls=cls, title=title))


class UserFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._shipped = {spec.name for spec in FIGURES}

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def forget(self) -> None:
        for spec in list(FIGURES):
            if spec.name not in self._shipped:
                FIGURES.discard(spec.name)
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            if origin.startswith(str(self.root)):
                del sys.modules[name]


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserFolder]:
    """An empty folder on ``sys.path``, as the current directory is for a server."""
    root = tmp_path / "mine"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    folder = UserFolder(root)
    try:
        yield folder
    finally:
        folder.forget()
