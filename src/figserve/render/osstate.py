"""Reading and changing this process's own state at the operating system's level.

Helpers of ``hygiene.py`` (a render process checking itself after each task) and of the fork
server (killing what figures left running): Linux's ``/proc`` and ``prctl``.
"""

from __future__ import annotations

import contextlib
import ctypes
import locale
import logging
import os
import signal
from typing import Any

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
PR_SET_CHILD_SUBREAPER = 36
_STATUS_KEYS = (b"Threads", b"Umask", b"SigBlk", b"SigIgn", b"SigCgt")
_KILL_ROUNDS = 50


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def prctl(option: int, arg: int = 0) -> int:
    if _LIBC is None:
        return -1
    return int(_LIBC.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))


def death_signal() -> int:
    out = ctypes.c_int(0)
    if _LIBC is None or _LIBC.prctl(PR_GET_PDEATHSIG, ctypes.byref(out), 0, 0, 0) != 0:
        return -1
    return out.value


def proc_status() -> dict[bytes, bytes]:
    try:
        with open("/proc/self/status", "rb") as f:
            text = f.read()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key in _STATUS_KEYS:
            out[key] = value.strip()
    return out


def fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def environ_data() -> dict[Any, Any]:
    # os.environ's own encoded mapping: comparing it costs far less than building a new one.
    data = getattr(os.environ, "_data", None)
    return data if isinstance(data, dict) else dict(os.environ)


LOGGERS = ("", "matplotlib", "figserve", "PIL")


def logging_state() -> tuple[Any, ...]:
    # Levels and handlers of the loggers drawing goes through: a figure that turns on
    # matplotlib's debug logging would slow every later render down.
    loggers = [logging.getLogger(name) for name in LOGGERS]
    return (
        logging.root.manager.disable,
        tuple((lg.level, tuple(lg.handlers), lg.disabled, lg.propagate) for lg in loggers),
    )


def restore_logging(state: tuple[Any, ...]) -> None:
    disable, loggers = state
    logging.disable(disable)
    for name, (level, handlers, disabled, propagate) in zip(LOGGERS, loggers, strict=True):
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.disabled, lg.propagate = disabled, propagate


def current_locale() -> str:
    try:
        return locale.setlocale(locale.LC_ALL)
    except locale.Error:
        return ""


def has_children() -> bool:
    """Whether this process has any child, running or exited (one system call)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a scan of /proc: only when there are some)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def kill_descendants() -> None:
    """Kill every descendant of this process. It is their subreaper, so orphans come back to it:
    kill its children, reap them, and look again until it has none."""
    me = os.getpid()
    for _ in range(_KILL_ROUNDS):
        if not has_children():
            return
        found = children_of(me)
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in found:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
