"""What the app keeps for as long as it serves, and how handlers reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import current_app

from ..config import Settings
from ..figures import Registry
from ..jobs import JobService
from ..live import Versions
from ..live.streams import StreamHub
from ..metrics import Metrics
from ..render import Renderer
from .errors import Problem

if TYPE_CHECKING:
    from .fastpath import FastPath


@dataclass
class AppState:
    """Settings and figures from the start; the services only while the app serves (each
    made and stopped by one serving hook in ``figserve/app.py``)."""

    settings: Settings
    registry: Registry
    metrics: Metrics | None = None
    renderer: Renderer | None = None
    jobs: JobService | None = None
    versions: Versions | None = None
    streams: StreamHub | None = None  # live pages' streams
    fast: FastPath | None = None  # the fast path of cached images (web/fastpath.py)

    def page_generation(self) -> int:
        """Moves whenever a figure's data changes: cached pages key on it (the version pins in
        their image URLs change with it). 0 while no data versions are followed."""
        return 0 if self.versions is None else self.versions.generation


def app_state() -> AppState:
    return current_app.extensions["figserve"]


def renderer() -> Renderer:
    r = app_state().renderer
    if r is None:
        # Only possible while the server starts or stops.
        raise Problem(
            503, "Not ready", "The renderer is not running.", headers={"Retry-After": "1"}
        )
    return r


def versions() -> Versions:
    v = app_state().versions
    if v is None:
        raise Problem(
            503, "Not ready", "Data versions are not running.", headers={"Retry-After": "1"}
        )
    return v
