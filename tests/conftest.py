from __future__ import annotations

import fcntl
import io
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, sync_playwright
from quart import Quart

from figserve.app import create_app
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.support.gates import Gate
from tests.support.live import LiveServer, live_server
from tests.support.redis import RedisServer

pytest_plugins = ["tests.support.usercode"]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In a parallel run, files of live tests (long, mostly waiting on servers) go out first,
    so the short ones fill the end instead of one long file running last on its own."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("live") is None)


@pytest.fixture(autouse=True)
def _alone_when_marked(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[None]:
    """Tests marked ``alone`` (they measure latency) run while no other test process of this
    run is inside a test; the others share. A turnstile lets a waiting ``alone`` test in
    before new shared ones, so it cannot starve."""
    folder = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = folder.parent  # shared by the test processes of this run
    alone = request.node.get_closest_marker("alone") is not None
    turnstile_path, lock_path = folder / "turnstile.lock", folder / "alone.lock"
    with open(turnstile_path, "a") as turnstile, open(lock_path, "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def app_config() -> dict:
    """Settings for the in-process app; tests override this fixture to change them."""
    return {"warm_up": False}


@pytest.fixture
async def app(app_config: dict) -> AsyncIterator[Quart]:
    application = create_app(app_config)
    # test_app runs the serving hooks, so the render pool exists as it does in production.
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: Quart):
    return app.test_client()


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    """One real redis-server for the in-process scale-out tests."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_service: RedisServer) -> str:
    """The shared Redis, emptied for this test."""
    redis_service.command("FLUSHALL")
    return redis_service.url


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server() as srv:
        yield srv


# Per module: sync Playwright runs an event loop of its own, which must be gone before the
# async tests of the next module start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def figserve_logs(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("figserve")  # has its own handler and does not propagate
    propagates = logger.propagate
    # Records reach caplog once: through this handler, not also through the root logger's.
    logger.propagate = False
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="figserve")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagates


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """A gate that holds gated renders until the test opens it."""
    g = Gate(tmp_path / "gate")
    yield g
    g.open()  # never leave a render held when a test fails
