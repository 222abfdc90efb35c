"""A start that fails says why in one line, last, and ends with a failing status.

Known failures (a wrong setting, a figure module that does not import, a figure declared
wrong, a pages folder that does not compile, a dependency that cannot be reached) are the
operator's to fix: their message says what and where, and no traceback stands above it. Any
other failure is a bug: its traceback is printed first, then the one-line message.

Under Hypercorn's own master (``hypercorn ... src.app:app``) a worker that fails to start
leaves with that message (``SystemExit``), so it is the last thing printed; Hypercorn 0.18's
master still exits 0 then (an upstream bug), which is why ``python -m figserve serve`` and
``python -m figserve check`` exist.
"""

from __future__ import annotations

import functools
import inspect
import logging
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

CONFIGURATION = 2  # exit status: the configuration is wrong; starting again will not help
FAILED = 1  # exit status: the start failed otherwise (a dependency, a bug)
# Told of every failed start first (``python -m figserve serve``'s worker reports it to its
# master: Quart passes a failed startup on to the server as a bare message).
on_failure: Callable[[BaseException], None] | None = None


class StartError(RuntimeError):
    """Something the operator must fix before figserve can start; the message says what."""


class _AlreadyReported(logging.Filter):
    """Drops the traceback the framework logs for a start failure already reported: the
    failure's message is printed once, last, by whoever started figserve."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "_figserve_reported", False)


ALREADY_REPORTED = _AlreadyReported()


def _tell(exc: BaseException) -> None:
    if on_failure is not None:
        on_failure(exc)
        if isinstance(exc, _known()):
            exc._figserve_reported = True  # type: ignore[attr-defined]


def _known() -> tuple[type[BaseException], ...]:
    """Failures whose message is enough (imported here, so no module imports upwards)."""
    from .config import SettingsError
    from .figures.declaration import FigureDeclarationError
    from .figures.loading import FigureModuleError
    from .web.userpages import PagesFolderError

    known: list[type[BaseException]] = [
        StartError,
        SettingsError,
        FigureModuleError,
        FigureDeclarationError,
        PagesFolderError,
    ]
    try:
        from .scaleout import RedisUnavailable
    except ImportError:  # scale-out mode's packages are not installed
        pass
    else:
        known.append(RedisUnavailable)
    return tuple(known)


def describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message of a failed start and its exit status; a traceback goes to
    standard error first when the failure is not a known one."""
    if isinstance(exc, _known()):
        status = FAILED if type(exc).__name__ == "RedisUnavailable" else CONFIGURATION
        return " ".join(str(exc).split()), status
    traceback.print_exception(exc, file=sys.stderr)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}", FAILED


def message(text: str) -> str:
    return f"figserve: the start failed: {text}"


def in_hypercorn_worker() -> bool:
    """Whether this process is a worker that Hypercorn's own master spawned."""
    return multiprocessing.parent_process() is not None


def failed_start(exc: BaseException) -> SystemExit:
    """What a Hypercorn worker raises when its start fails: the message, as its last words."""
    text, _ = describe(exc)
    return SystemExit(message(text))


def reported(fn: F) -> F:
    """Wrap a function that starts figserve (building the app, starting its services): in a
    worker of Hypercorn's own master, a failure ends the worker with its message, last."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def starting(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                _tell(exc)
                if in_hypercorn_worker():
                    # Raised from a task, an exit would be reported again when the task is
                    # collected: the message must stay last, so the worker ends here (what
                    # the start had begun is stopped already).
                    text, status = describe(exc)
                    sys.stdout.flush()
                    print(message(text), file=sys.stderr, flush=True)
                    os._exit(status)
                raise

        return starting  # type: ignore[return-value]

    @functools.wraps(fn)
    def building(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            _tell(exc)
            if in_hypercorn_worker():
                raise failed_start(exc) from None
            raise

    return building  # type: ignore[return-value]
