"""Image options and the canvas they come to."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.render import ImageOptions, LimitExceeded, canvas_for

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


options = st.builds(
    ImageOptions,
    format=st.sampled_from(["png", "svg", "pdf", "webp", "jpeg"]),
    w=st.integers(50, 3000),
    h=st.integers(50, 3000),
    dpr=st.floats(1, 3),
)


@FAST
@given(options, st.integers(1, 20_000_000))
def test_canvas_respects_the_pixel_limit(opts: ImageOptions, max_pixels: int) -> None:
    try:
        canvas = canvas_for(opts, max_pixels)
    except LimitExceeded as exc:
        assert exc.param == "w" and "pixels" in str(exc)
    else:
        assert canvas.width_px >= 1 and canvas.height_px >= 1
        assert canvas.width_px * canvas.height_px <= max_pixels
        assert canvas.dpi == pytest.approx(100 * opts.dpr)
