"""Settings for one figserve process.

Defaults live here; any of them can be overridden by an environment variable named
``FIGSERVE_<KEY>`` (so operators configure the shipped server without touching code) or by the
mapping passed to ``create_app`` (so tests build the app they need).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

KIB = 1024
MIB = 1024 * KIB
SECONDS = 1.0


@dataclass(frozen=True)
class Settings:
    # Images of one page render side by side, but each render thread also holds the GIL for
    # stretches; two per worker keeps the event loop responsive on a small machine.
    render_threads: int = 2
    # Renders admitted per worker (running + queued) before new ones are shed with 503.
    render_queue_limit: int = 16
    # A render still unfinished after this answers 503; the thread finishes it in the background.
    render_timeout: float = 10 * SECONDS
    # Byte budget of the in-process LRU of deterministic (seeded) renders.
    cache_bytes: int = 64 * MIB
    # Hard cap on output pixels (width x height) of any raster image.
    max_pixels: int = 6_000_000
    # zlib level for PNG: 1 is much faster than the default 6 for slightly larger files.
    png_compress_level: int = 6
    # Request bodies (JSON specs, uploads) larger than this answer 413.
    max_body_bytes: int = 2 * MIB
    # Limits for uploaded data sets.
    max_upload_rows: int = 100_000
    max_upload_columns: int = 50
    # Render one tiny figure at start so the first visitor does not pay for font loading.
    warm_up: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Defaults overridden by ``FIGSERVE_*`` variables, converted to each field's type."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"FIGSERVE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(f.name, f.type, raw)
        return cls(**values)

    def updated(self, overrides: dict[str, Any] | None) -> Settings:
        """A copy with ``overrides`` applied; unknown keys are an error, not silently ignored."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise KeyError(f"unknown figserve settings: {', '.join(unknown)}")
        return replace(self, **overrides)


def _convert(name: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    try:
        if type_name == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"FIGSERVE_{name.upper()}={raw!r} is not a valid {type_name}") from exc
    return raw
