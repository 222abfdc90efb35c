"""Asking a figure's version function, in a render process of the probe lane.

A version function is the user's code: it may raise, hang or return anything. So it never runs
in the server's process: ``VersionProbe`` travels to a supervised render process (the function
by reference to its module, like a figure's draw function), where a deadline can really stop
it, and only a short, checked text comes back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..figures import FigureParams
from ..figures.registry import VersionFn
from ..render.errors import Overloaded, RenderError, RenderUnavailable

MAX_VERSION_CHARS = 200  # characters of a data version; a longer one is refused


class BadVersion(ValueError):
    """A version function returned something that cannot name a version."""


def version_text(value: Any) -> str:
    """The text of a data version: a ``str``, an ``int`` or a finite ``float``, at most
    ``MAX_VERSION_CHARS`` characters. Anything else is a ``BadVersion`` saying what came."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadVersion(
            f"the version function returned {type(value).__name__}; return a str, int or "
            "float (a file's mtime, a row count, an ETag)"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise BadVersion(f"the version function returned {value!r}; return a finite number")
    try:
        text = value if isinstance(value, str) else repr(value)
    except ValueError:  # an int too long to write out
        text = None
    if text is None or len(text) > MAX_VERSION_CHARS:
        raise BadVersion(
            f"the version function returned a value longer than {MAX_VERSION_CHARS} "
            "characters; return something short (a hash of a long value)"
        )
    # Typed, so that 1, 1.0 and "1" stay three versions, as the function said.
    kind = "s" if isinstance(value, str) else "n"
    return f"{kind}:{text}"


@dataclass(frozen=True)
class VersionProbe:
    """``fn(params)``, checked, as a task of a render process (``run(png_level)``)."""

    fn: VersionFn
    params: FigureParams

    def run(self, png_level: int) -> str:
        return version_text(self.fn(self.params))


# ``probe(task, deadline)``: runs a task in a supervised render process (the renderer's probe
# lane), killed at ``deadline`` seconds.
Probe = Callable[[VersionProbe, float], Awaitable[Any]]
# A check's result: (data version, error, when (wall clock), outcome label).
Outcome = tuple[str | None, str | None, float, str]


async def ask(probe: Probe, fn: VersionFn, params: FigureParams, timeout: float) -> Outcome:
    """Ask a version function once, in a render process, within ``timeout`` seconds."""
    when = time.time()  # the data is at least as new as the start of its check
    try:
        data = await probe(VersionProbe(fn, params), timeout)
    except RenderError as exc:
        error, outcome = _failure(exc, timeout)
        # Tried again ``refresh`` seconds after it ended, not after it began (a source that
        # hangs until its deadline is not asked again at once).
        return None, error, time.time(), outcome
    if not isinstance(data, str):  # a probe task gives text, or raises
        return None, "the version check returned no text", when, "invalid"
    return data, None, when, "ok"


def _failure(exc: RenderError, timeout: float) -> tuple[str, str]:
    """A failed check's message and outcome label."""
    if exc.stopped:
        return f"the version function did not answer within {timeout:g} s", "timeout"
    if isinstance(exc, Overloaded | RenderUnavailable):
        return f"no render process could ask the version function now ({exc})", "busy"
    text = str(exc)
    if text.startswith(f"{BadVersion.__name__}: "):
        return text.split(": ", 1)[1], "invalid"
    return f"the version function failed: {text}", "failed"
