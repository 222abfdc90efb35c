"""A figure's identity in its cache key and ETag, and in what its render process answers.

The key hashes everything the bytes depend on (code version, data version, parameters, format,
canvas, PNG level); a render process answers with the code version of what it ran, and bytes of
another version are served but never tagged or kept, in any cache level.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from figserve.app import create_app
from figserve.config import Settings
from figserve.figures import FIGURES
from figserve.figures.identity import figure_version
from figserve.render import ImageOptions, Renderer, job_for
from figserve.render.handles import fork_server
from figserve.render.shared import VALUE, SharedCache
from figserve.validation import RenderRequest
from tests.support.prometheus import metric
from tests.support.usercode import UserFolder, spiral_module
from tests.support.waiting import until, until_sync

NORMAL = FIGURES.get("normal")
assert NORMAL is not None


def key(**changes: object) -> str | None:
    base: dict = {
        "params": {"seed": 1},
        "opts": {"w": 400, "h": 300},
        "data": None,
        "png_level": 3,
    }
    base.update(changes)
    return job_for(
        NORMAL,
        NORMAL.params(**base["params"]),
        ImageOptions(**base["opts"]),
        6_000_000,
        base["data"],
        png_level=base["png_level"],
    ).key


def test_everything_the_bytes_depend_on_is_in_the_key() -> None:
    same = key()
    assert same is not None and same == key()
    variants = [
        key(params={"seed": 2}),
        key(params={"seed": 1, "n": 50}),
        key(opts={"w": 401, "h": 300}),
        key(opts={"w": 400, "h": 300, "dpr": 2}),
        key(opts={"w": 400, "h": 300, "dpi": 150}),
        key(opts={"w": 400, "h": 300, "format": "svg"}),
        key(data="v2"),
        key(png_level=6),
    ]
    assert len({same, *variants}) == len(variants) + 1
    # The PNG level is part of PNG keys only: other formats do not depend on it.
    svg = {"w": 400, "h": 300, "format": "svg"}
    assert key(opts=svg, png_level=3) == key(opts=svg, png_level=9)


def test_the_code_version_is_in_the_key_and_random_figures_have_none() -> None:
    job = job_for(NORMAL, NORMAL.params(seed=1), ImageOptions(), 6_000_000)
    assert job.version == figure_version(NORMAL)
    assert job_for(NORMAL, NORMAL.params(), ImageOptions(), 6_000_000).key is None
    request = RenderRequest.of(NORMAL, NORMAL.params(seed=1), ImageOptions(), 6_000_000, data="d1")
    assert request.job.key == key(data="d1", png_level=None)


@settings(max_examples=40, deadline=None)
@given(
    seeds=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    data=st.tuples(st.none() | st.text(max_size=20), st.none() | st.text(max_size=20)),
)
def test_keys_differ_whenever_seed_or_data_version_do(seeds, data) -> None:
    a = key(params={"seed": seeds[0]}, data=data[0])
    b = key(params={"seed": seeds[1]}, data=data[1])
    assert (a == b) == (seeds[0] == seeds[1] and data[0] == data[1])


async def test_bytes_of_another_code_version_are_served_but_never_kept(
    redis_url: str, figserve_logs
) -> None:
    shared = SharedCache(Redis.from_url(redis_url), 1 << 20, 60)
    await shared.start()
    renderer = Renderer(
        Settings(render_processes=1, job_threads=0, warm_up=False),
        shared=shared,
        preload=["figserve.figures"],
        figures=list(FIGURES),
    )
    await renderer.start()
    try:
        good = job_for(NORMAL, NORMAL.params(seed=5), ImageOptions(), 6_000_000)
        # A job made for code the render processes do not run (as after an edit on disk).
        stale = dataclasses.replace(good, version="0" * 32, key="k" * 64)
        for _ in range(2):
            result = await renderer.render(stale)
            assert result.data.startswith(b"\x89PNG")
            assert result.etag is None and result.cache == "off"
        assert renderer.cached(stale.key) is None
        assert await shared.redis.get(VALUE + stale.key) is None
        assert renderer.stats.version_mismatches == 2
        told = {r.message for r in figserve_logs.records if "other code than" in r.message}
        assert len(told) == 1 and "restart" in told.pop()
        # The real job is tagged and kept in both levels.
        result = await renderer.render(good)
        assert result.etag == good.etag and result.cache == "miss"
        assert renderer.cached(good.key) == result.data
        await until(lambda: shared.stats.stored == 1, "the shared level to store it")
    finally:
        await renderer.close()
        await shared.close()


async def test_an_edited_figure_module_is_never_cached_under_the_old_version(
    user_folder: UserFolder,
) -> None:
    path = user_folder.write("edited_fig.py", spiral_module("edited"))
    app = create_app({"warm_up": False, "figures": "edited_fig", "render_processes": 1})
    async with app.test_app():
        client = app.test_client()
        before = await client.get("/figures/edited.png?seed=1")
        assert before.status_code == 200 and "ETag" in before.headers
        # The module changes on disk, and the render processes' server starts again (as after
        # a crash): they now run other code than this worker made its keys for.
        path.write_text(Path(path).read_text().replace("200)", "150)"))
        state = app.extensions["figserve"]
        server = fork_server([])
        os.kill(server.pid, signal.SIGKILL)
        until_sync(lambda: not server.alive, "the fork server to die")
        await until(lambda: state.renderer.ready, "a new fork server", timeout=60)
        for _ in range(2):
            after = await client.get("/figures/edited.png?seed=2")
            assert after.status_code == 200
            assert after.headers["Cache-Control"] == "no-store"
            assert "ETag" not in after.headers and after.headers["X-Render-Cache"] == "off"
        text = await (await client.get("/metrics")).get_data(as_text=True)
        assert metric(text, "figserve_render_version_mismatches_total", figure="edited") == 2
        # Bytes rendered before the edit are still those of the worker's code.
        assert (await client.get("/figures/edited.png?seed=1")).headers["ETag"] == (
            before.headers["ETag"]
        )
