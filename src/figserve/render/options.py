"""Output format and size of an image: the options every image request takes, and the canvas
(pixels and dpi) they come to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MEDIA_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
}
Format = Literal["png", "svg", "pdf", "webp", "jpeg"]
CSS_DPI = 100  # one CSS pixel per figure "dot" at dpr 1


class ImageOptions(BaseModel):
    """Output format and size. Sizes are CSS pixels; ``dpr`` (or ``dpi``) scales the raster."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    format: Format = Field("png", description="Image format.")
    w: int = Field(400, ge=50, le=3000, description="Width in CSS pixels.")
    h: int = Field(300, ge=50, le=3000, description="Height in CSS pixels.")
    dpr: float = Field(1.0, ge=1, le=3, description="Device pixel ratio (1-3).")
    dpi: int | None = Field(
        None,
        ge=20,
        le=600,
        description="Dots per inch (100 per CSS pixel); when given, used instead of dpr.",
    )


class LimitExceeded(ValueError):
    """A request that is valid on its own but too large for this server."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Canvas:
    width_px: int
    height_px: int
    dpi: float

    @property
    def figsize(self) -> tuple[float, float]:
        # A hundredth of a pixel of slack so float rounding never drops the last pixel column.
        return ((self.width_px + 0.01) / self.dpi, (self.height_px + 0.01) / self.dpi)

    @property
    def pixels(self) -> int:
        return self.width_px * self.height_px


def canvas_for(opts: ImageOptions, max_pixels: int) -> Canvas:
    """Pixels and dpi of an image. ``dpi``, when given, sets the density (``dpr`` is then not
    used); otherwise ``dpr`` does. An image that would pass ``max_pixels`` is drawn at the
    highest density that fits: the same figure, with fewer pixels."""
    dpi = float(opts.dpi) if opts.dpi is not None else CSS_DPI * opts.dpr
    width_px = max(1, round(opts.w * dpi / CSS_DPI))
    height_px = max(1, round(opts.h * dpi / CSS_DPI))
    if width_px * height_px > max_pixels:
        dpi = CSS_DPI * math.sqrt(max_pixels / (opts.w * opts.h))
        # Rounded down, with room for float error (50.0 must not become 49).
        width_px = max(1, math.floor(opts.w * dpi / CSS_DPI + 1e-9))
        height_px = max(1, math.floor(opts.h * dpi / CSS_DPI + 1e-9))
        while width_px * height_px > max_pixels:  # a tiny limit: 1 px on one side
            width_px, height_px = max(1, width_px - 1), max(1, height_px - 1)
        dpi = CSS_DPI * min(width_px / opts.w, height_px / opts.h)
    return Canvas(width_px, height_px, dpi)
