"""``Dataset`` and ``files_version``: figures of one data file share its version, and the file is
read once per version in each render process, not once per image."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from figserve.app import create_app
from figserve.figures import Registry
from figserve.live import files_version
from figserve.live.serving import VersionFunctionError, check_version_functions
from tests.live.test_versions import _colour
from tests.support.livedata import SourceParams, draw_source
from tests.support.usercode import UserFolder

MODULE = """
    import os
    import uuid
    from pathlib import Path

    from matplotlib.figure import Figure

    from figserve import FIGURES, Dataset, FigureParams, files_version

    DATA = Path({data!r})
    LOADS = Path({loads!r})


    def load() -> list[str]:
        (LOADS / f"load-{{os.getpid()}}-{{uuid.uuid4().hex[:8]}}").touch()
        return DATA.read_text().split()


    COLOURS = Dataset(load, version=files_version(DATA))


    class NoParams(FigureParams):
        pass


    @FIGURES.figure("dsfirst", title="First", description="The first colour.",
                    params=NoParams, version=COLOURS.version, refresh=0.5)
    def first(fig: Figure, p: NoParams) -> None:
        fig.patch.set_facecolor(COLOURS.get()[0])


    @FIGURES.figure("dslast", title="Last", description="The last colour.",
                    params=NoParams, version=COLOURS.version, refresh=0.5)
    def last(fig: Figure, p: NoParams) -> None:
        fig.patch.set_facecolor(COLOURS.get()[-1])
"""


@pytest.fixture
async def dataset_app(user_folder: UserFolder, tmp_path: Path) -> AsyncIterator[Quart]:
    data, loads = tmp_path / "colours.txt", tmp_path / "loads"
    data.write_text("red blue")
    loads.mkdir()
    user_folder.write("colourdata.py", MODULE.format(data=str(data), loads=str(loads)))
    app = create_app({"warm_up": False, "figures": "colourdata", "render_processes": 1})
    app.config["test_paths"] = (data, loads)
    async with app.test_app():
        yield app


async def test_figures_share_a_dataset_loaded_once_per_version(dataset_app: Quart) -> None:
    client = dataset_app.test_client()
    data, loads = dataset_app.config["test_paths"]
    versions = dataset_app.extensions["figserve"].versions

    async def colours() -> list[tuple[int, ...]]:
        shown = []
        for name in ("dsfirst", "dslast"):
            for size in ("w=60&h=50", "w=80&h=60", "w=100&h=70"):
                resp = await client.get(f"/figures/{name}.png?{size}")
                assert resp.status_code == 200
                shown.append(_colour(await resp.get_data()))
        return shown

    assert await colours() == [(255, 0, 0)] * 3 + [(0, 0, 255)] * 3
    assert len(list(loads.iterdir())) == 1  # six images, one render process, one load
    before = data.stat().st_mtime_ns
    data.write_text("green yellow")
    os.utime(data, ns=(before + 1_000_000_000,) * 2)
    for name in ("dsfirst", "dslast"):
        await versions.changed(name)
    assert await colours() == [(0, 128, 0)] * 3 + [(255, 255, 0)] * 3
    assert len(list(loads.iterdir())) == 2


def test_files_version_follows_size_and_time(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    version = files_version(path, tmp_path / "never")
    assert version().endswith(" missing")
    path.write_text("x")
    first = version()
    path.write_text("xy")
    assert version() != first
    assert version({"any": "params"}) == version()


def test_a_version_function_that_cannot_reach_a_render_process_stops_the_start() -> None:
    registry = Registry()
    registry.figure(
        "lambdas", title="t", description="d", params=SourceParams, version=lambda p: 1
    )(draw_source)
    with pytest.raises(VersionFunctionError, match=r"figure 'lambdas'.*top level of its module"):
        check_version_functions(registry)
