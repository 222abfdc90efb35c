"""Percentiles and spreads, the only statistics the benchmark reports, and JSON of its records."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0-100): a value that was measured, never interpolated."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


@dataclass(frozen=True)
class Spread:
    """One figure over several fresh server starts (or loads): never a single lucky run."""

    n: int
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        vs = [v for v in values if v is not None and not math.isnan(v)]
        if not vs:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(len(vs), min(vs), statistics.median(vs), max(vs))

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        """``median (min-max)``, or just the value when there is one."""
        if self.n == 0:
            return "n/a"
        f = f"{{:,.{digits}f}}"
        if self.n == 1:
            return f.format(self.median) + unit
        return f"{f.format(self.median)}{unit} ({f.format(self.min)}-{f.format(self.max)})"


def jsonable(value: Any) -> Any:
    """Records as JSON values; a figure that could not be measured (NaN) becomes null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(record: Any, path: Path) -> None:
    path.write_text(json.dumps(jsonable(record), indent=1, allow_nan=False) + "\n")
