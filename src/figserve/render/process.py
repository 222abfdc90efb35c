"""The loop of one render process: take a task, run it, check what it left behind, answer.

Each task arrives as ``(request id, png level, pickled task)``; each answer is ``(request id,
pid, status, value, meta, cpu seconds, rss bytes)`` (``protocol.py``), sent only after the
process has compared itself with its baseline (``hygiene.py``) and put back what it could. The
verdict travels in ``meta``: ``reset`` (what was put back), ``recycle`` (what cannot be, so the
worker replaces this process) and ``detail``. A task's own failure, however odd (an exception
whose ``__str__`` raises, a result that is not plain data), is reported as an error, never a
dead process.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import warm
from .osstate import kill_descendants, prctl
from .protocol import SpawnOptions, is_plain, recv_obj, send_obj

if TYPE_CHECKING:
    from .hygiene import Baseline

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
MESSAGE_CHARS = 2000
TRACEBACK_CHARS = 20000


@dataclass(frozen=True)
class Result:
    """What a task may return instead of a bare value: the value, and what to tell the worker
    besides (plain data)."""

    value: Any
    meta: dict[str, Any] = field(default_factory=dict)


def _die_with(parent: int) -> None:
    """Be killed when the fork server dies, even in the middle of a render (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # it died before the line above took effect


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * _PAGE


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def serve(fd: int, server: int, options: SpawnOptions, baseline: Baseline) -> None:
    _die_with(server)
    # Orphans of whatever a figure starts come back to this process, where they can be found.
    prctl(_PR_SET_CHILD_SUBREAPER, 1)
    if options.nice:
        with contextlib.suppress(OSError):
            os.nice(options.nice)
    if options.memory_bytes:
        with contextlib.suppress(OSError, ValueError):
            cap = _address_space() + options.memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sock = socket.socket(fileno=fd)
    warm.install(options.warm_figures)
    baseline.attach(fd)
    try:
        while True:
            try:
                request_id, level, task_bytes = recv_obj(sock)
            except (EOFError, OSError):
                return  # the worker closed our socket: retire
            status, value, meta = _run(task_bytes, level)
            verdict = baseline.check()
            if not verdict.clean:
                warm.drop_all()  # kept figures were drawn in the state just undone
                meta.update(reset=verdict.restored, recycle=verdict.recycle, detail=verdict.detail)
            if not baseline.socket_intact:
                os._exit(1)  # a figure took our socket: the worker sees the end and replaces us
            meta["held"] = warm.held()
            # Asked each time: a process forked by a figure answers with its own pid.
            pid = os.getpid()
            reply = (request_id, pid, status, value, meta, time.process_time(), rss_bytes())
            try:
                send_obj(sock, reply)
            except OSError:
                return
    finally:
        kill_descendants()


def _run(task_bytes: bytes, level: int) -> tuple[str, Any, dict[str, Any]]:
    try:
        task = pickle.loads(task_bytes)
        result = task.run(level)
    except MemoryError:
        return "memory", "", {}
    except BaseException as exc:  # the task's own failure, reported to the worker
        return "error", _describe(exc), {}
    value, meta = (result.value, dict(result.meta)) if isinstance(result, Result) else (result, {})
    if not (is_plain(value) and is_plain(meta)):
        message = f"TypeError: the task returned {_type_name(value)}, not plain data"
        return "error", (message, ""), {}
    return "ok", value, meta


def _describe(exc: BaseException) -> tuple[str, str]:
    """A message and a traceback, however badly the exception behaves when shown."""
    name = _type_name(exc)
    try:
        message = f"{name}: {exc}"
    except BaseException:
        message = f"{name}: <the exception could not be shown>"
    try:
        remote = traceback.format_exc()
    except BaseException:
        remote = ""
    return message[:MESSAGE_CHARS], remote[-TRACEBACK_CHARS:]


def _type_name(obj: object) -> str:
    try:
        return str(type(obj).__qualname__)
    except BaseException:
        return "an object"
