from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from figserve.app import create_app
from figserve.figures import FIGURES
from tests.support.livedata import Source, add_live_figures

VERSION_TIMEOUT = 1.0


@pytest.fixture
def live_config() -> dict:
    return {"warm_up": False, "version_timeout": VERSION_TIMEOUT}


@pytest.fixture
async def live_app(live_config: dict) -> AsyncIterator[Quart]:
    app = create_app({**live_config, "registry": add_live_figures(FIGURES.copy())})
    async with app.test_app():
        yield app


@pytest.fixture
def live_client(live_app: Quart):
    return live_app.test_client()


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return Source(tmp_path / "source", "white")
