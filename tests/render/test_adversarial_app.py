"""Over HTTP: whatever a figure does to its render process, every request gets its own image
(its own format, the bytes a clean server draws) or a 503, never a 500 or another request's
bytes, and nothing wrong is ever cached."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from figserve.app import create_app
from figserve.render import ImageOptions, job_for
from figserve.render.pool import PoolSettings, RenderPool
from tests.support.adversarial import registry_with_adversarial_figures
from tests.support.gates import Gate
from tests.support.prometheus import metric

REGISTRY = registry_with_adversarial_figures()
FORMATS = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
SEEDS = (1, 2)
SIZE = {"w": 240, "h": 180}
# Figures that answer twice, out of turn or in garbage, and ones that change state.
ATTACKERS = ["fork_child", "fake_reply", "garbage", "hostile_pickle", "rc_set", "spin_thread"]


def _clean_bytes() -> dict[tuple[int, str], bytes]:
    """What a clean render process draws for every URL the test asks for."""
    pool = RenderPool(PoolSettings(1, 0, 20.0, 0, 10_000, 1 << 40), ["figserve.figures"])
    pool.start()
    try:
        spec = REGISTRY.get("normal")
        assert spec is not None
        return {
            (seed, fmt): pool.run(
                job_for(spec, spec.params(seed=seed), ImageOptions(format=fmt, **SIZE), 10**7),
                3,
            ).value
            for seed, fmt in itertools.product(SEEDS, FORMATS)
        }
    finally:
        pool.close()


@pytest.mark.parametrize("processes", [1, 2])
async def test_every_request_gets_its_own_image_whatever_a_figure_did(
    tmp_path: Path, processes: int
) -> None:
    clean = await asyncio.to_thread(_clean_bytes)
    app = create_app(
        {
            "warm_up": False,
            "registry": REGISTRY,
            "render_processes": processes,
            "render_queue_limit": 64,
            "png_compress_level": 3,
        }
    )
    async with app.test_app():
        client = app.test_client()
        for round_, attacker in enumerate(ATTACKERS):
            gate = Gate(tmp_path / f"g{round_}")
            urls = [
                (seed, fmt, f"/figures/normal.{fmt}?seed={seed}&w={SIZE['w']}&h={SIZE['h']}")
                for seed, fmt in itertools.product(SEEDS, FORMATS)
            ]
            # The attacker and a page's worth of other images at once, on every process.
            answers = await asyncio.gather(
                client.get(f"/figures/{attacker}.png?{gate.query(f'r{round_}')}"),
                *(client.get(url) for _, _, url in urls),
            )
            attack, *images = answers
            assert attack.status_code in {200, 503}, attacker
            for (seed, fmt, url), resp in zip(urls, images, strict=True):
                assert resp.status_code in {200, 503}, (attacker, url)
                if resp.status_code == 200:
                    body = await resp.get_data()
                    assert body.startswith(FORMATS[fmt]), (attacker, url, body[:20])
                    assert body == clean[(seed, fmt)], (attacker, url)
            app.extensions["figserve"].renderer._cache.clear()  # the next round renders again
        # What the cache holds now is exactly what a clean server draws.
        for seed, fmt, url in urls:
            first = await client.get(url)
            assert first.status_code == 200 and await first.get_data() == clean[(seed, fmt)]
            again = await client.get(url)
            assert again.headers["X-Render-Cache"] == "hit"
            assert await again.get_data() == clean[(seed, fmt)]
        text = await (await client.get("/metrics")).get_data(as_text=True)
        assert metric(text, "figserve_render_protocol_errors_total") >= 1
        assert metric(text, "figserve_render_state_restored_total", figure="rc_set") >= 1
