"""The warm fork server that every render process of a worker is forked from.

A Hypercorn worker starts this module as a child (``python -c ... main(<fd>)``, see
``handles.py``). It imports matplotlib and the figure modules once, computes the code version of
every figure, draws a tiny figure to load the fonts, takes the baseline that render processes
compare themselves with after each task (``hygiene.py``), then forks a render process
(``process.py``) whenever the worker asks: a fork of a warm process is ready in milliseconds,
shares its memory pages with the server, and can be killed at any moment without harming anything
else. Hypercorn's workers are daemonic, so ``multiprocessing`` may not start children there;
plain fork from this single-threaded server has no such limit and is safe.

Control messages go over a ``SOCK_SEQPACKET`` socket (``protocol.py``), each with at most one
file descriptor (the render process's end of its own socket). Everything dies with the worker:
the server exits when its control socket closes, render processes when the server dies
(``PR_SET_PDEATHSIG``) or their socket closes.

The server is a child subreaper: a process that a figure started and that outlived its render
process (killed at a deadline, or one that left its process group with ``setsid``) is
reparented here, and killed as soon as a render process dies by a signal.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .protocol import SpawnOptions, recv_control, send_control

if TYPE_CHECKING:
    from ..figures import FigureSpec
    from .hygiene import Baseline

PR_SET_CHILD_SUBREAPER = 36
STOP_SECONDS = 5.0  # at most this long to end every process left when the server stops


class Task(Protocol):
    """What a render process runs: anything picklable with ``run(png_level) -> result``.

    The result must be plain data (bytes, text, numbers, and tuples, lists and dicts of them),
    or a ``process.Result`` that adds plain ``meta`` to it."""

    def run(self, png_level: int) -> Any: ...


@dataclass(frozen=True)
class ServerInit:
    """Sent once to a new fork server."""

    sys_path: list[str]
    preload: list[str] = field(default_factory=list)
    warm_up: bytes = b""  # a pickled Task, read after preload (it may be a user's figure)
    png_level: int = 3
    # The figures whose code versions are computed here, pickled: they can only be read once
    # their modules are importable (after sys_path and preload).
    figures: bytes = b""


_children: set[int] = set()  # render processes alive (or not yet reaped)
# The state render processes start from; a container, so taking it again rebinds nothing
# that render processes fingerprint.
_settled: dict[str, Baseline] = {}


def _reap(signum: int = 0, frame: object = None) -> None:
    sweep = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in _children:
            _children.discard(pid)
            # Killed mid-task: processes its figure started may live on and come to us.
            sweep = sweep or os.WIFSIGNALED(status)
        else:
            sweep = True  # a stray ended: its own children are ours now
    if sweep:
        _kill_strays()


def _kill_strays() -> None:
    """Kill every child of this server that is not a render process."""
    from .osstate import children_of

    for pid in children_of(os.getpid()):
        if pid not in _children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> None:
    ctrl = socket.socket(fileno=int(argv[1]))
    # Stop signals are the worker's to act on; this server ends when the worker closes the
    # control socket, so an in-flight render is never cut by a signal meant for the server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        init, _ = recv_control(ctrl)
    except EOFError:
        return
    sys.path[:] = init.sys_path
    _preload(init.preload)
    _compute_versions(init.figures)
    if init.warm_up:
        pickle.loads(init.warm_up).run(init.png_level)
    _settle()
    from .osstate import prctl

    prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGCHLD, _reap)
    send_control(ctrl, ("ready", os.getpid()))
    try:
        _serve_control(ctrl)
    finally:
        _stop_children()


def _preload(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)


def _compute_versions(figures: bytes) -> None:
    """The code version of every figure, from the code this server imported: render processes
    inherit them and report them with each image (see ``figures/identity.py``)."""
    from ..figures.identity import figure_version

    specs: list[FigureSpec] = pickle.loads(figures) if figures else []
    for spec in specs:
        figure_version(spec)


def _settle() -> None:
    """Take the state render processes start from, once everything is imported."""
    import matplotlib.dates

    from .fingerprint import CodeFingerprint
    from .hygiene import Baseline

    matplotlib.dates.get_epoch()  # set lazily on first use; a figure may not move it later
    # Objects alive now are shared with every render process: keep the collector off them so
    # their pages stay shared instead of being copied on the first collection.
    gc.collect()
    _settled["baseline"] = Baseline(CodeFingerprint())
    gc.freeze()


def _serve_control(ctrl: socket.socket) -> None:
    while True:
        try:
            message, fds = recv_control(ctrl)
        except (EOFError, ConnectionResetError):
            return
        kind = message[0]
        if kind == "spawn":
            pid = _fork(ctrl, fds[0], message[1])
            os.close(fds[0])
            send_control(ctrl, ("spawned", pid))
        elif kind == "preload":
            try:
                sys.path.extend(p for p in message[2] if p not in sys.path)
                _preload(message[1])
                _compute_versions(message[3])
                _settle()
            except BaseException as exc:  # a broken module: the worker reports it
                send_control(ctrl, ("error", f"{type(exc).__name__}: {exc}"))
            else:
                send_control(ctrl, ("ok",))
        elif kind == "stop":
            return
        for fd in fds[1:]:
            os.close(fd)


def _fork(ctrl: socket.socket, fd: int, options: SpawnOptions) -> int:
    server = os.getpid()
    # Blocked across fork and bookkeeping, so a child that dies at once is never reaped before
    # it is recorded (and its pid never killed later after reuse, or taken for a stray).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            try:
                ctrl.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                from .process import serve

                serve(fd, server, options, _settled["baseline"])
            finally:
                os._exit(0)
        _children.add(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    return pid


def _stop_children() -> None:
    """Kill every render process and every stray, and reap them all."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(_children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _children.clear()
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        _kill_strays()
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # nothing left
        if pid == 0:
            time.sleep(0.005)


if __name__ == "__main__":
    main(sys.argv)
