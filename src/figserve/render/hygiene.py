"""What a figure leaves behind in its render process, found after every task and undone.

A figure is user code running in a process that draws the next figure too. Whatever it changes
outside its own ``Figure`` must not reach the next render. After every task the render process
compares itself with the state it started in (``Baseline``) and either puts back exactly what
changed (``restored``) or asks to be replaced (``recycle``): forks are cheap, and a replaced
process starts from the fork server's clean state. What is checked, and why, is listed in
docs/operations.md ("Render processes"); in short:

- restored: matplotlib's ``rcParams``; the working directory; the environment; the umask;
  signal handlers, the signal mask and interval timers; ``sys.path`` and the import hooks; the
  standard stream objects; tracing and profiling hooks; logging levels and handlers; the
  recursion limit, the switch interval, the integer-string limit and the garbage collector's
  settings; warning filters; numpy's error handling and print options; the locale; resource
  limits, CPU affinity and the parent-death signal;
- replaced: threads left running (a thread cannot be stopped, and its CPU would count against
  later renders), child processes (killed first: the process is their subreaper), the standard
  file descriptors or the process's socket redirected or closed, a changed process group or
  session or a raised niceness, and code or registries of matplotlib and figserve changed
  (``fingerprint.py``).

The checks cost about 0.4 ms per task. They run in the render process only; the worker learns
the verdict from the reply.
"""

from __future__ import annotations

import copy
import gc
import locale
import os
import resource
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from . import osstate
from .fingerprint import CodeFingerprint

_LIMITS = [
    getattr(resource, name)
    for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE",
                 "RLIMIT_STACK", "RLIMIT_NPROC", "RLIMIT_CORE")
    if hasattr(resource, name)
]  # fmt: skip
_TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)


@dataclass
class Verdict:
    restored: list[str] = field(default_factory=list)  # put back exactly
    recycle: list[str] = field(default_factory=list)  # cannot be undone: replace the process
    detail: str = ""  # the first change found, in words, for the log

    @property
    def clean(self) -> bool:
        return not self.restored and not self.recycle


class Baseline:
    """A render process's state before any figure ran in it: made in the fork server (the costly
    copies are shared by every fork), then ``attach``-ed in each render process once it is set
    up (its own limits, priority and socket)."""

    def __init__(self, code: CodeFingerprint) -> None:
        import matplotlib
        import numpy as np

        self._np = np
        self._code = code
        self._rc = [(rc, _copy_rc(rc)) for rc in _rc_dicts(matplotlib)]
        self._cwd = os.getcwd()
        self._env = dict(osstate.environ_data())
        self._sys_lists = [(lst, list(lst)) for lst in (sys.path, sys.meta_path, sys.path_hooks)]
        self._sys_lists_named = ("path", "meta_path", "path_hooks")
        self._streams = {n: getattr(sys, n) for n in ("stdin", "stdout", "stderr")}
        self._limits = (
            sys.getrecursionlimit(),
            sys.getswitchinterval(),
            sys.get_int_max_str_digits(),
        )
        self._gc = (gc.isenabled(), gc.get_threshold())
        self._warnings = (list(warnings.filters), warnings.showwarning, warnings.formatwarning)
        self._np_err = np.geterr()
        self._np_print = np.get_printoptions()
        self._locale = osstate.current_locale()
        self._logging = osstate.logging_state()
        self._fds = {fd: osstate.fd_identity(fd) for fd in (0, 1, 2)}
        self._sock: tuple[int, tuple[int, int] | None] = (-1, None)

    def attach(self, sock_fd: int) -> None:
        """Take this render process's own state, once it is set up."""
        self._status = osstate.proc_status()
        self._handlers = {
            s: signal.getsignal(s)
            for s in signal.valid_signals()
            if s not in (signal.SIGKILL, signal.SIGSTOP)
        }
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self._sock = (sock_fd, osstate.fd_identity(sock_fd))
        self._rlimits = {r: resource.getrlimit(r) for r in _LIMITS}
        self._nice = os.getpriority(os.PRIO_PROCESS, 0)
        self._affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self._group = (os.getpgrp(), os.getsid(0))
        self._death = osstate.death_signal()

    @property
    def socket_intact(self) -> bool:
        """Whether the process's socket is still the one it was given (else it cannot reply)."""
        fd, ident = self._sock
        return osstate.fd_identity(fd) == ident and os.get_blocking(fd)

    def check(self) -> Verdict:
        """Compare, restore what can be restored exactly, and say what cannot."""
        v = Verdict()
        self._check_process(v)
        self._check_interpreter(v)
        self._check_libraries(v)
        problem = self._code.changed()
        if problem is not None:
            v.recycle.append("code")
            v.detail = v.detail or problem
        return v

    # -- the process ---------------------------------------------------------------------------

    def _check_process(self, v: Verdict) -> None:
        if osstate.has_children():
            osstate.kill_descendants()
            v.recycle.append("child processes")
        status = osstate.proc_status()
        if status != self._status:
            if status.get(b"Threads") != self._status.get(b"Threads"):
                v.recycle.append("threads")
            if status.get(b"Umask") != self._status.get(b"Umask"):
                os.umask(int(self._status[b"Umask"], 8))
                v.restored.append("umask")
            if status.get(b"SigBlk") != self._status.get(b"SigBlk"):
                signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
                v.restored.append("signal mask")
            if any(status.get(k) != self._status.get(k) for k in (b"SigIgn", b"SigCgt")):
                self._restore_handlers(v)
        for which in _TIMERS:
            if signal.getitimer(which) != (0.0, 0.0):
                signal.setitimer(which, 0)
                _once(v.restored, "timers")
        if {fd: osstate.fd_identity(fd) for fd in self._fds} != self._fds:
            v.recycle.append("standard file descriptors")
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        if cwd != self._cwd:
            try:
                os.chdir(self._cwd)
                v.restored.append("working directory")
            except OSError:
                v.recycle.append("working directory")
        if osstate.environ_data() != self._env:
            decode = os.fsdecode
            saved = {decode(k): decode(v) for k, v in self._env.items()}
            for key in set(os.environ) - set(saved):
                del os.environ[key]
            os.environ.update(saved)
            time.tzset()  # TZ may have been changed
            v.restored.append("environment")
        self._check_limits(v)
        if (os.getpgrp(), os.getsid(0)) != self._group:
            v.recycle.append("process group")
        if osstate.death_signal() != self._death:
            osstate.prctl(osstate.PR_SET_PDEATHSIG, self._death)
            osstate.prctl(osstate.PR_SET_CHILD_SUBREAPER, 1)
            v.restored.append("death signal")

    def _restore_handlers(self, v: Verdict) -> None:
        for sig, handler in self._handlers.items():
            if signal.getsignal(sig) == handler:
                continue
            if handler is None:  # set outside Python: cannot be put back from here
                v.recycle.append("signal handlers")
                return
            try:
                signal.signal(sig, handler)
            except (OSError, ValueError):
                v.recycle.append("signal handlers")
                return
        now = osstate.proc_status()
        if any(now.get(k) != self._status.get(k) for k in (b"SigIgn", b"SigCgt")):
            v.recycle.append("signal handlers")  # changed below Python (ctypes, a C library)
        else:
            v.restored.append("signal handlers")

    def _check_limits(self, v: Verdict) -> None:
        for res, limit in self._rlimits.items():
            if resource.getrlimit(res) != limit:
                try:
                    resource.setrlimit(res, limit)
                    _once(v.restored, "resource limits")
                except (OSError, ValueError):
                    _once(v.recycle, "resource limits")
        if os.getpriority(os.PRIO_PROCESS, 0) != self._nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, self._nice)
                v.restored.append("priority")
            except OSError:
                v.recycle.append("priority")
        if self._affinity is not None and os.sched_getaffinity(0) != self._affinity:
            try:
                os.sched_setaffinity(0, self._affinity)
                v.restored.append("CPU affinity")
            except OSError:
                v.recycle.append("CPU affinity")

    # -- the interpreter -----------------------------------------------------------------------

    def _check_interpreter(self, v: Verdict) -> None:
        for (lst, saved), name in zip(self._sys_lists, self._sys_lists_named, strict=True):
            current = getattr(sys, name)
            if current is not lst or current != saved:
                lst[:] = saved
                setattr(sys, name, lst)
                _once(v.restored, "import path")
        for name, stream in self._streams.items():
            if getattr(sys, name) is not stream:
                setattr(sys, name, stream)
                _once(v.restored, "standard streams")
        if sys.gettrace() is not None or sys.getprofile() is not None:
            sys.settrace(None)
            sys.setprofile(None)
            v.restored.append("tracing")
        if threading.gettrace() is not None or threading.getprofile() is not None:
            threading.settrace(None)  # type: ignore[arg-type]
            threading.setprofile(None)  # type: ignore[arg-type]
            _once(v.restored, "tracing")
        limits = (sys.getrecursionlimit(), sys.getswitchinterval(), sys.get_int_max_str_digits())
        if limits != self._limits:
            sys.setrecursionlimit(self._limits[0])
            sys.setswitchinterval(self._limits[1])
            sys.set_int_max_str_digits(self._limits[2])
            v.restored.append("interpreter limits")
        if (gc.isenabled(), gc.get_threshold()) != self._gc:
            (gc.enable if self._gc[0] else gc.disable)()
            gc.set_threshold(*self._gc[1])
            v.restored.append("garbage collector")
        filters, show, fmt = self._warnings
        if warnings.filters != filters or (warnings.showwarning, warnings.formatwarning) != (
            show,
            fmt,
        ):
            warnings.filters[:] = filters
            warnings.showwarning, warnings.formatwarning = show, fmt
            mutated = getattr(warnings, "_filters_mutated", None)
            if mutated is not None:
                mutated()
            v.restored.append("warning filters")
        if osstate.logging_state() != self._logging:
            osstate.restore_logging(self._logging)
            v.restored.append("logging")
        if osstate.current_locale() != self._locale:
            try:
                locale.setlocale(locale.LC_ALL, self._locale)
                v.restored.append("locale")
            except locale.Error:
                v.recycle.append("locale")

    # -- numpy and matplotlib ------------------------------------------------------------------

    def _check_libraries(self, v: Verdict) -> None:
        np = self._np
        if np.geterr() != self._np_err:
            np.seterr(**self._np_err)
            v.restored.append("numpy error handling")
        if np.get_printoptions() != self._np_print:
            np.set_printoptions(**self._np_print)
            v.restored.append("numpy print options")
        for rc, saved in self._rc:
            if dict.__eq__(rc, saved):
                continue
            for key in set(dict.keys(rc)) - set(saved):
                dict.__delitem__(rc, key)
            for key, value in saved.items():
                if dict.get(rc, key, _Missing) != value:
                    dict.__setitem__(rc, key, _copy_value(value))
            _once(v.restored, "rcParams")


class _Missing:
    pass


def _rc_dicts(matplotlib: Any) -> list[dict[str, Any]]:
    return [matplotlib.rcParams, matplotlib.rcParamsDefault, matplotlib.rcParamsOrig]


def _copy_value(value: Any) -> Any:
    # Sentinels (the automatic backend is a bare object()) are compared by identity.
    return value if type(value) is object else copy.deepcopy(value)


def _copy_rc(rc: dict[str, Any]) -> dict[str, Any]:
    # dict's own items: RcParams' item access would resolve the backend (importing pyplot).
    return {key: _copy_value(value) for key, value in dict.items(rc)}


def _once(items: list[str], name: str) -> None:
    if name not in items:
        items.append(name)
