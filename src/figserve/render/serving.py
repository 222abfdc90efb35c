"""The renderer as a service: started with its render processes (and, in scale-out mode, the
shared cache level in Redis) while a server or job worker runs, closed after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from ..config import Settings
from ..figures import Registry
from ..figures.identity import figure_version
from .encode import RenderJob, job_for
from .options import ImageOptions
from .renderer import Renderer, RenderObserver, pool_settings


@asynccontextmanager
async def serving_renderer(
    settings: Settings,
    registry: Registry,
    observer: RenderObserver | None = None,
    *,
    interactive: bool = True,
) -> AsyncIterator[Renderer]:
    """A started renderer, with the shared cache level in scale-out mode; closed on leaving.

    ``interactive=False`` (a standalone job worker) starts render processes for jobs only: one
    per ``job_threads``, plus one for a result's assembly.
    """
    pool = pool_settings(settings)
    if settings.redis_url and settings.job_threads:
        # Items take job_threads processes; a plan or an assembly runs beside them.
        pool = replace(pool, background=settings.job_threads + 1)
    if not interactive:
        pool = replace(pool, processes=0, probes=0)
    shared: Any = None
    if settings.redis_url and settings.shared_cache_bytes and interactive:
        # Scale-out only: its packages come with the "scale" extra.
        from .. import scaleout
        from .shared import SharedCache

        client = scaleout.cache_client(settings)
        try:
            await scaleout.check(client, settings, "the render cache")
        except BaseException:
            await client.aclose()
            raise
        shared = SharedCache(client, settings.shared_cache_bytes, settings.shared_cache_ttl)
        await shared.start()
    # Every figure's code version, once, from the code this worker imported: the keys of its
    # images, and what its render processes must report back.
    figures = list(registry)
    await asyncio.to_thread(lambda: [figure_version(spec) for spec in figures])
    renderer = Renderer(
        settings,
        observer=observer,
        preload=_figure_modules(registry),
        warm_up=_warm_up_job(registry, settings) if settings.warm_up else None,
        shared=shared,
        pool=pool,
        figures=figures,
    )
    try:
        await renderer.start()
        yield renderer
    finally:
        await renderer.close()
        if shared is not None:
            await shared.close()


def _figure_modules(registry: Registry) -> list[str]:
    """Modules a render process needs: loaded once in the fork server, shared by every fork."""
    modules = ["figserve.figures", "figserve.figures.data", "figserve.jobs.assemble"]
    for spec in registry:
        for module in (spec.draw.__module__, spec.params.__module__):
            if module not in modules:
                modules.append(module)
    return modules


def _warm_up_job(registry: Registry, settings: Settings) -> RenderJob | None:
    """One tiny figure with text, so fonts and caches are loaded before the first visitor."""
    spec = next(iter(registry), None)
    if spec is None:
        return None
    return job_for(
        spec,
        spec.params(),
        ImageOptions(w=100, h=75),
        settings.max_pixels,
        png_level=settings.png_compress_level,
    )
