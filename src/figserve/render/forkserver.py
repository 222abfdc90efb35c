"""The render processes' side: a warm fork server and the loop of each render process.

A Hypercorn worker starts this module as a child (``python -m figserve.render.forkserver <fd>``).
It imports matplotlib and the figure modules once, draws a tiny figure to load the fonts, then
forks a render process whenever the worker asks: a fork of a warm process is ready in
milliseconds, shares its memory pages with the server, and can be killed at any moment without
harming anything else. Hypercorn's workers are daemonic, so ``multiprocessing`` may not start
children there; plain fork from this single-threaded server has no such limit and is safe.

Control messages go over a ``SOCK_SEQPACKET`` socket, each with at most one file descriptor
(the render process's end of its own socket). Render processes speak length-prefixed pickles:
a task in, ``(status, value, cpu_seconds, rss_bytes)`` out. Everything dies with the worker: the
server exits when its control socket closes, render processes when the server dies
(``PR_SET_PDEATHSIG``) or their socket closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol

_HEADER = struct.Struct(">Q")
CONTROL_MAX = 1 << 20  # bytes of one control message (module lists, a tiny warm-up job)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Task(Protocol):
    """What a render process runs: anything picklable with ``run(png_level) -> result``."""

    def run(self, png_level: int) -> Any: ...


@dataclass(frozen=True)
class ServerInit:
    """Sent once to a new fork server."""

    sys_path: list[str]
    preload: list[str] = field(default_factory=list)
    warm_up: Task | None = None
    png_level: int = 3


@dataclass(frozen=True)
class SpawnOptions:
    nice: int = 0  # added to the render process's niceness (background work)
    memory_bytes: int = 0  # address space a render process may add past its start; 0: no cap


# -- framing (both sides) ------------------------------------------------------------------


def send_obj(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)))
    sock.sendall(data)


def recv_obj(sock: socket.socket, deadline: float | None = None) -> Any:
    """The next message; ``EOFError`` when the peer is gone, ``TimeoutError`` past
    ``deadline`` (a ``time.monotonic()`` value)."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    return pickle.loads(_recv_exact(sock, size, deadline))


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[got:])
        except ConnectionResetError:
            n = 0
        if n == 0:
            raise EOFError
        got += n
    return buf


def send_control(sock: socket.socket, obj: Any, fd: int | None = None) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if fd is None:
        sock.sendmsg([data])
    else:
        socket.send_fds(sock, [data], [fd])


def recv_control(sock: socket.socket) -> tuple[Any, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, CONTROL_MAX, 1)
    if not data:
        raise EOFError
    return pickle.loads(data), fds


# -- the fork server -----------------------------------------------------------------------

_children: set[int] = set()


def _reap(signum: int = 0, frame: object = None) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _children.discard(pid)


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
    if init.warm_up is not None:
        init.warm_up.run(init.png_level)
    # Objects alive now are shared with every render process: keep the collector off them so
    # their pages stay shared instead of being copied on the first collection.
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    send_control(ctrl, ("ready", os.getpid()))
    try:
        _serve_control(ctrl)
    finally:
        _stop_children()


def _preload(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)


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
    # it is recorded (and its pid never killed later after reuse).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            try:
                ctrl.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                _render_process(fd, server, options)
            finally:
                os._exit(0)
        _children.add(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    return pid


def _stop_children() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(_children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in list(_children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    _children.clear()


# -- a render process ----------------------------------------------------------------------


def _die_with(parent: int) -> None:
    """Be killed when the fork server dies, even in the middle of a render (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
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


def _render_process(fd: int, server: int, options: SpawnOptions) -> None:
    _die_with(server)
    if options.nice:
        with contextlib.suppress(OSError):
            os.nice(options.nice)
    if options.memory_bytes:
        with contextlib.suppress(OSError, ValueError):
            cap = _address_space() + options.memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sock = socket.socket(fileno=fd)
    while True:
        try:
            task, level = recv_obj(sock)
        except (EOFError, OSError):
            return  # the worker closed our socket: retire
        try:
            reply: tuple[Any, ...] = ("ok", task.run(level))
        except MemoryError:
            reply = ("memory", "")
        except BaseException as exc:  # the figure's own failure, reported to the worker
            reply = ("error", (f"{type(exc).__name__}: {exc}"[:2000], traceback.format_exc()))
        try:
            send_obj(sock, (*reply, time.process_time(), rss_bytes()))
        except OSError:
            return


if __name__ == "__main__":
    main(sys.argv)
