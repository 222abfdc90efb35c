"""Data versions in scale-out mode, on a real redis-server: one check per pair for the whole
cluster, every change told to every instance, and instances of two releases kept apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from quart import Quart

from figserve.app import create_app
from figserve.figures import FIGURES
from tests.live.test_versions import _colour, _metric, _url
from tests.support.livedata import FAST_REFRESH, Source, add_live_figures
from tests.support.redis import RedisServer


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two instances sharing one Redis, in this process (render processes of their own)."""
    config = {
        "warm_up": False,
        "redis_url": redis_url,
        "job_threads": 0,
        "version_timeout": 1.0,
        "render_processes": 1,
    }
    apps = [create_app({**config, "registry": add_live_figures(FIGURES.copy())}) for _ in "ab"]
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.test_app())
        yield apps[0], apps[1]


def _versions(app: Quart):
    return app.extensions["figserve"].versions


async def test_one_check_for_the_whole_cluster(instances, source: Source) -> None:
    a, b = (app.test_client() for app in instances)
    url = _url(source, "live_slow")
    answers = await asyncio.gather(*(c.get(url) for c in (a, b) * 8))
    assert {r.status_code for r in answers} == {200}
    assert source.checks() == 1
    outcomes = [
        await _metric(c, "figserve_version_checks_total", figure="live_slow", outcome=o)
        for c in (a, b)
        for o in ("changed", "shared")
    ]
    # One instance asked the source; the other took its record from Redis.
    assert sorted(outcomes) == [0, 0, 1, 1]


async def test_a_change_found_on_one_instance_reaches_the_others(instances, source) -> None:
    app_a, app_b = instances
    a, b = app_a.test_client(), app_b.test_client()
    url = _url(source, "live_slow")
    for client in (a, b):
        assert _colour(await (await client.get(url)).get_data()) == (255, 255, 255)
    queue = _versions(app_b).subscribe()
    try:
        source.set("red")
        checks = source.checks()
        await _versions(app_a).changed("live_slow")  # on A only
        change = await asyncio.wait_for(queue.get(), 10)  # B's own subscribers hear of it
        assert (change.figure, change.data) == ("live_slow", "s:red")
        assert _colour(await (await b.get(url)).get_data()) == (255, 0, 0)
        assert source.checks() == checks + 1  # one check for the cluster
    finally:
        _versions(app_b).unsubscribe(queue)


async def test_a_pair_watched_on_one_instance_updates_every_instance(instances, source) -> None:
    app_a, app_b = instances
    spec = app_a.extensions["figserve"].registry.get("live")
    params = spec.params(**source.params())
    b = app_b.test_client()
    await b.get(_url(source))
    queue = _versions(app_b).subscribe()
    _versions(app_a).watch(spec, params)
    try:
        source.set("teal")
        change = await asyncio.wait_for(queue.get(), FAST_REFRESH + 10)
        assert change.data == "s:teal"
        assert _colour(await (await b.get(_url(source))).get_data()) == (0, 128, 128)
    finally:
        _versions(app_a).unwatch(spec, params)
        _versions(app_b).unsubscribe(queue)


async def test_changes_missed_by_a_lost_subscription_are_caught_up(
    instances, source, redis_service: RedisServer
) -> None:
    a, b = (app.test_client() for app in instances)
    url = _url(source)  # refresh: half a second
    for client in (a, b):
        await client.get(url)
    # Every subscription is dropped (a failover, a network cut): what is published meanwhile
    # reaches nobody.
    redis_service.command("CLIENT", "KILL", "TYPE", "pubsub")
    source.set("olive")
    await a.get(url)
    # B learns it from the pair's record in Redis within the figure's refresh.
    seen: list[tuple[int, ...]] = []

    async def served() -> bool:
        seen.append(_colour(await (await b.get(url)).get_data()))
        return seen[-1] == (128, 128, 0)

    deadline = asyncio.get_running_loop().time() + FAST_REFRESH + 5
    while not await served():
        assert asyncio.get_running_loop().time() < deadline, seen


async def test_redis_lost_leaves_each_instance_checking_alone(
    instances, source, redis_service: RedisServer
) -> None:
    a = instances[0].test_client()
    url = _url(source)
    assert (await a.get(url)).status_code == 200
    redis_service.pause()
    try:
        source.set("maroon")
        versions = _versions(instances[0])
        await versions.changed("live")
        resp = await a.get(url)
        assert resp.status_code == 200
        assert _colour(await resp.get_data()) == (128, 0, 0)
    finally:
        redis_service.resume()
