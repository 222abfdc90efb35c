"""figserve with a 1 ms GIL switch interval (lever run only; the default is 5 ms).

A render thread that holds the GIL makes the event loop wait up to the switch interval each time
it wants to run; a shorter interval bounds that wait. Served as ``bench.switch_app:app``.
"""

import sys

sys.setswitchinterval(0.001)

from src.app import app  # noqa: E402  (after the interval is set)

__all__ = ["app"]
