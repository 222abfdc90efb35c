"""What a serving app keeps: its settings and figures from the start, and each service while
the app serves (made and stopped by ``figserve/services.py``). No web framework here: the web
layer reaches it through ``figserve/web/state.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Settings
from .figures import Registry
from .jobs import JobService
from .live import Versions
from .live.streams import StreamHub
from .metrics import Metrics
from .render import Renderer


@dataclass
class AppState:
    settings: Settings
    registry: Registry
    metrics: Metrics | None = None
    renderer: Renderer | None = None
    jobs: JobService | None = None
    versions: Versions | None = None
    streams: StreamHub | None = None  # live pages' streams
    # The fast path of cached images (an ASGI layer of the web app, figserve/web/fastpath.py).
    fast: Any = None
    # Rendered pages: the page thread and its cache (figserve/web/pagecache.py).
    pages: Any = None

    def page_generation(self) -> int:
        """Moves whenever a figure's data changes: cached pages key on it (the version pins in
        their image URLs change with it). 0 while no data versions are followed."""
        return 0 if self.versions is None else self.versions.generation
