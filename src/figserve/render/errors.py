"""What a render can end in besides bytes. Each maps to one documented HTTP answer."""

from __future__ import annotations


class RenderError(Exception):
    """Base of every render outcome that is not an image."""

    # True when a render process was killed to end this render (its deadline passed).
    stopped = False

    def __init__(self, message: str = "", *, stopped: bool = False) -> None:
        super().__init__(message)
        self.stopped = stopped


class Overloaded(RenderError):
    """The admission limit is reached: the caller should retry later (503)."""

    retry_after = 1


class RenderTimeout(RenderError):
    """The render did not finish within the deadline (503): the server was busy."""

    retry_after = 2


class RenderUnavailable(RenderError):
    """No render process can take work: the server is starting, stopping or broken (503)."""

    retry_after = 1


class RenderCrashed(RenderError):
    """The render process died during the render (a crash or the OOM killer) (503)."""

    retry_after = 1


class RenderProtocolError(RenderCrashed):
    """The render process answered out of turn (another request's reply, a garbled or second
    message): it was killed and replaced, and its answer thrown away (503)."""


class TooComplex(RenderError):
    """The figure needed more CPU time or memory than a render may have (422)."""


class RenderFailed(RenderError):
    """The figure function raised: a bug in the figure, logged with its traceback (500)."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback
