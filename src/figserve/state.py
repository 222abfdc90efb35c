"""What a serving app keeps: its settings and figures from the start, and each service while
the app serves (made and stopped by ``figserve/services.py``). No web framework here: the web
layer reaches it through ``figserve/web/state.py``."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings
from .figures import Registry
from .jobs import JobService
from .metrics import Metrics
from .render import Renderer


@dataclass
class AppState:
    settings: Settings
    registry: Registry
    metrics: Metrics | None = None
    renderer: Renderer | None = None
    jobs: JobService | None = None
