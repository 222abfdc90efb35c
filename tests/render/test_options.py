"""Image options and the canvas they come to."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from figserve.render import ImageOptions, canvas_for

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


options = st.builds(
    ImageOptions,
    format=st.sampled_from(["png", "svg", "pdf", "webp", "jpeg"]),
    w=st.integers(50, 3000),
    h=st.integers(50, 3000),
    dpr=st.floats(1, 3),
    dpi=st.none() | st.integers(20, 600),
)


@FAST
@given(options, st.integers(2500, 20_000_000))
def test_canvas_is_the_asked_density_or_the_highest_that_fits(
    opts: ImageOptions, max_pixels: int
) -> None:
    canvas = canvas_for(opts, max_pixels)
    asked = opts.dpi if opts.dpi is not None else 100 * opts.dpr
    assert canvas.width_px >= 1 and canvas.height_px >= 1
    assert canvas.width_px * canvas.height_px <= max_pixels
    assert canvas.dpi <= asked + 1e-9
    if canvas.dpi < asked - 1e-9:
        # Lowered only as far as the limit needs: one more pixel each way would not fit.
        assert (canvas.width_px + 1) * (canvas.height_px + 1) > max_pixels
    else:
        assert canvas.width_px == max(1, round(opts.w * asked / 100))
    # The layout is the asked one: the pixels keep the figure's proportions (to a pixel).
    ratio = opts.w / opts.h
    smaller = min(canvas.width_px, canvas.height_px)
    assert abs(canvas.width_px / canvas.height_px - ratio) <= (ratio + 1) / smaller
