"""A live server for the web tests: one worker, a short body deadline, its own jobs folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live import LiveServer, live_server

BODY_TIMEOUT = 2.0  # seconds, FIGSERVE_BODY_TIMEOUT of the live server


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "FIGSERVE_JOBS_DIR": str(tmp_path_factory.mktemp("web-jobs")),
        "FIGSERVE_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "FIGSERVE_WARM_UP": "false",
    }
    with live_server(workers=1, env=env) as server:
        yield server
