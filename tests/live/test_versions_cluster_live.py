"""Two real instances on a real Redis: a data change reaches both, checked once for both; two
releases of a figure behind one Redis (a rolling deploy) never mix their bytes."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from figserve.client import data_changed
from tests.live.test_versions import _colour, _url
from tests.support.cluster import scaleout_env
from tests.support.html import parse
from tests.support.live import ROOT, LiveServer, live_server
from tests.support.livedata import Source
from tests.support.prometheus import metric
from tests.support.redis import RedisServer, redis_server

pytestmark = pytest.mark.live

TOKEN = "an-operator-token-of-some-length"
WAIT = 60.0


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def pair(redis: RedisServer, tmp_path_factory) -> Iterator[tuple[LiveServer, LiveServer]]:
    with ExitStack() as stack:
        servers = []
        for name in "ab":
            env = scaleout_env(
                redis.url,
                FIGSERVE_ADMIN_TOKEN=TOKEN,
                FIGSERVE_JOBS_DIR=str(tmp_path_factory.mktemp(f"jobs-{name}")),
            )
            servers.append(
                stack.enter_context(live_server(workers=1, env=env, app="tests.support.app:app"))
            )
        yield servers[0], servers[1]


def _checks(server: LiveServer, outcome: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return metric(text, "figserve_version_checks_total", figure="live_slow", outcome=outcome)


def test_both_instances_see_a_change_checked_once(pair, tmp_path: Path) -> None:
    a, b = pair
    source = Source(tmp_path / "source")
    path = _url(source, "live_slow")  # refresh: an hour
    for server in (a, b):
        assert _colour(httpx.get(server.url + path, timeout=WAIT).content) == (255, 255, 255)
    assert source.checks() == 1  # the second instance took the first one's check
    source.set("red")
    # Said on A: B shows it too, at once, and the source was asked once more for both.
    assert data_changed(a.url, "live_slow", token=TOKEN)["changed"] == 1
    for server in (b, a):
        assert _colour(httpx.get(server.url + path, timeout=WAIT).content) == (255, 0, 0)
    assert source.checks() == 2
    shared = _checks(a, "shared") + _checks(b, "shared")
    assert shared >= 2  # B took A's checks from Redis both times


SWATCH = """
    from matplotlib.figure import Figure

    from figserve import FIGURES, FigureParams


    class SwatchParams(FigureParams):
        pass


    @FIGURES.figure("swatch", title="Swatch", description="One colour.", params=SwatchParams)
    def swatch(fig: Figure, p: SwatchParams) -> None:
        fig.patch.set_facecolor("{colour}")
"""


def test_two_releases_behind_one_redis_never_mix_their_bytes(
    redis: RedisServer, tmp_path: Path
) -> None:
    servers = []
    with ExitStack() as stack:
        for colour in ("#ff0000", "#0000ff"):
            folder = tmp_path / colour.strip("#")
            folder.mkdir()
            (folder / "swatchmod.py").write_text(textwrap.dedent(SWATCH.format(colour=colour)))
            env = scaleout_env(
                redis.url,
                FIGSERVE_FIGURES="swatchmod",
                FIGSERVE_JOBS_DIR=str(folder / "jobs"),
            )
            shell = (
                f"{sys.executable} -m hypercorn --config "
                f"{ROOT / 'hypercorn.toml'} --bind 127.0.0.1:{{port}} 'figserve.app:create_app()'"
            )
            servers.append(
                stack.enter_context(live_server(shell=shell, workers=1, env=env, cwd=folder))
            )
        old, new = servers
        path = "/figures/swatch.png?w=80&h=60"
        first = httpx.get(old.url + path, timeout=WAIT)
        second = httpx.get(new.url + path, timeout=WAIT)
        assert _colour(first.content) == (255, 0, 0)
        assert _colour(second.content) == (0, 0, 255)
        # The new release drew its own: nothing taken from the old one's cache in Redis.
        assert second.headers["X-Render-Cache"] == "miss"
        assert first.headers["ETag"] != second.headers["ETag"]
        # A client of the old release that lands on the new one revalidates and gets the new
        # image; a pin of the old release is not current on the new one.
        moved = httpx.get(new.url + path, headers={"If-None-Match": first.headers["ETag"]})
        assert moved.status_code == 200 and _colour(moved.content) == (0, 0, 255)
        page = httpx.get(old.url + "/gallery/swatch?w=80&h=60", timeout=WAIT).text
        pinned = parse(page).images[0]["src"]
        assert "_v=" in pinned
        assert httpx.get(old.url + pinned).headers["Cache-Control"].endswith("immutable")
        elsewhere = httpx.get(new.url + pinned, timeout=WAIT)
        assert elsewhere.headers["Cache-Control"] == "no-cache"
        assert _colour(elsewhere.content) == (0, 0, 255)
        assert httpx.get(old.url + path, timeout=WAIT).headers["X-Render-Cache"] == "hit"
