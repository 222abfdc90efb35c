"""How handlers reach what the app keeps (``figserve/state.py``)."""

from __future__ import annotations

from quart import current_app

from ..live import Versions
from ..render import Renderer
from ..state import AppState
from .errors import Problem

__all__ = ["AppState", "app_state", "renderer", "versions"]


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
