"""Data versions as a service: started after the renderer while the app serves, closed before
it (checks run in the renderer's probe lane)."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..config import Settings
from ..figures import Registry
from ..render import Renderer
from .entries import VersionObserver
from .versions import Versions


class VersionFunctionError(RuntimeError):
    """A figure's version function cannot be sent to a render process."""


@asynccontextmanager
async def serving_versions(
    settings: Settings,
    registry: Registry,
    renderer: Renderer,
    observer: VersionObserver | None = None,
) -> AsyncIterator[Versions]:
    check_version_functions(registry)
    cluster: Any = None
    if settings.redis_url and any(spec.version is not None for spec in registry):
        from .. import scaleout
        from .cluster import Cluster

        client = scaleout.cache_client(settings)
        try:
            await scaleout.check(client, settings, "data versions")
        except BaseException:
            await client.aclose()
            raise
        cluster = Cluster(client)
    versions = Versions(
        settings,
        renderer.run_probe,
        observer=observer,
        forget=renderer.forget,
        cluster=cluster,
    )
    await versions.start()
    try:
        yield versions
    finally:
        await versions.close()


def check_version_functions(registry: Registry) -> None:
    """Stop the start, naming the figure, if a version function cannot reach a render process
    (it travels by reference to its module, like a draw function)."""
    for spec in registry:
        if spec.version is None:
            continue
        try:
            pickle.dumps(spec.version)
        except Exception as exc:
            raise VersionFunctionError(
                f"figure {spec.name!r}: its version function {spec.version!r} cannot be run in "
                "a render process; define it at the top level of its module (not a lambda or a "
                f"function inside a function) ({type(exc).__name__}: {exc})"
            ) from None
