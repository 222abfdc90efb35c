"""A user's folder with a live figure of their data, a page of it, and the server that runs it.

The figure ``meter`` draws the number in a text file (its data) as a bar; its version is the
file's text, checked every half second. ``pages/meter.html`` shows it live three times (two
colours, one of them at two sizes) and once not live.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from pathlib import Path

from tests.support.live import ROOT, LiveServer

METER = '''
    """A live figure of the user's data: the number in a file, as a bar."""

    from __future__ import annotations

    from pathlib import Path

    from matplotlib.figure import Figure
    from pydantic import Field

    from figserve import FIGURES, FigureParams

    DATA = Path(__file__).with_name("data.txt")


    def meter_version(params: FigureParams) -> str:
        return DATA.read_text().strip()


    class MeterParams(FigureParams):
        colour: str = Field("C0", pattern="^C[0-9]$", description="Bar colour.")
        n: int = Field(0, ge=0, le=1000, description="A number that changes nothing drawn.")


    @FIGURES.figure(
        "meter",
        title="Meter",
        description="The number in a file, as a bar.",
        alt="The number in the file, as a bar",
        params=MeterParams,
        version=meter_version,
        refresh=0.5,
    )
    def meter(fig: Figure, p: MeterParams) -> None:
        value = float(DATA.read_text().strip() or 0)
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.05, right=0.95, bottom=0.15, top=0.85)
        ax.barh([0], [value], color=p.colour)
        ax.set_xlim(0, 100)
        ax.set_yticks([])
        ax.set_title(f"{value:g}")
'''

PAGE = """
    {% extends "base.html" %}
    {% block title %}Meter{% endblock %}
    {% block content %}
    <h1>Meter</h1>
    <div class="grid">
      <figure>{{ figure("meter", live=True) }}</figure>
      <figure>{{ figure("meter", colour="C1", live=True) }}</figure>
      <figure>{{ figure("meter", colour="C1", w=300, h=200, live=True) }}</figure>
      <figure>{{ figure("meter", colour="C2") }}<figcaption>not live</figcaption></figure>
    </div>
    {% endblock %}
"""


class MeterFolder:
    """The user's folder: ``meter.py``, ``pages/meter.html`` and the data file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data.txt"
        (root / "pages").mkdir(parents=True, exist_ok=True)
        (root / "meter.py").write_text(textwrap.dedent(METER).lstrip())
        (root / "pages" / "meter.html").write_text(textwrap.dedent(PAGE).lstrip())
        shutil.copy(ROOT / "hypercorn.toml", root / "hypercorn.toml")
        self.set(10)

    def set(self, value: float) -> None:
        """New data: written whole at once (a reader never sees half of it)."""
        tmp = self.data.with_suffix(".tmp")
        tmp.write_text(f"{value:g}\n")
        os.replace(tmp, self.data)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "FIGSERVE_FIGURES": "meter",
            "FIGSERVE_PAGES": str(self.root / "pages"),
            "FIGSERVE_JOBS_DIR": str(self.root / "jobs"),
            "FIGSERVE_RENDER_PROCESSES": "1",
            "FIGSERVE_WARM_UP": "false",
            "PYTHONPATH": str(self.root),
            **extra,
        }

    def server(self, args: tuple[str, ...] = (), **env: str) -> LiveServer:
        return LiveServer(
            workers=1, env=self.env(**env), args=args, app="figserve.app:create_app()",
            cwd=self.root,
        )  # fmt: skip

    def edit_module(self, old: str, new: str) -> None:
        """Edit ``meter.py``, with a later modification time even on a file system of coarse
        timestamps (``--reload`` looks at it)."""
        path = self.root / "meter.py"
        text = path.read_text()
        assert old in text, old
        before = path.stat().st_mtime_ns
        path.write_text(text.replace(old, new))
        later = max(before + 2_000_000_000, time.time_ns())
        os.utime(path, ns=(later, later))
