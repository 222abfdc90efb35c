"""What the app keeps for as long as it serves, and how handlers reach it."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app

from ..config import Settings
from ..figures import Registry
from ..jobs import JobRunner
from ..render import Renderer
from .errors import Problem


@dataclass
class AppState:
    settings: Settings
    registry: Registry
    renderer: Renderer | None = None  # created when serving starts, closed when it stops
    jobs: JobRunner | None = None  # likewise: runs background jobs, see src/jobs


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
