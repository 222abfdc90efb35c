"""Live pages in scale-out mode: a change seen on one instance reaches the viewers of every
instance, and its new image is drawn once for all of them (the render cache in Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import cluster
from tests.support.livepage import MeterFolder
from tests.support.prometheus import metric
from tests.support.sse import EventStream, stream_url

pytestmark = pytest.mark.live
PLAIN = "/figures/meter.png?w=400&h=300"


async def renders(urls: list[str]) -> float:
    async with httpx.AsyncClient() as client:
        texts = [(await client.get(f"{u}/metrics")).text for u in urls]
    return sum(metric(t, "figserve_renders_started_total", figure="meter") for t in texts)


async def test_a_change_reaches_the_viewers_of_both_instances(tmp_path: Path) -> None:
    folder = MeterFolder(tmp_path)
    env = {k: v for k, v in folder.env().items() if k != "FIGSERVE_JOBS_DIR"}
    with cluster(instances=2, workers=0, **env) as scale:
        urls = [s.url for s in scale.instances]
        streams = [await EventStream(stream_url(u, PLAIN)).__aenter__() for u in urls]
        try:
            for s in streams:
                await s.wait_for(lambda s=s: s.pins(), "the first pin", timeout=30)
            for value in (21, 22, 23):
                before = [s.pins() for s in streams]
                drawn = await renders(urls)
                folder.set(value)
                for s, old in zip(streams, before, strict=True):
                    await s.wait_for(lambda s=s, old=old: s.pins() != old, f"{value} told", 30)
                assert streams[0].pins() == streams[1].pins()
                # Both instances render ahead; the cache they share makes it one render.
                await asyncio.sleep(0)
                assert await renders(urls) == drawn + 1
        finally:
            for s in streams:
                await s.__aexit__()
