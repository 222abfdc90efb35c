"""A job process: one lower-priority Python process that runs ``work`` calls for one worker.

Hypercorn's workers are daemonic, and ``multiprocessing`` does not let those have children, so
the process is started with ``subprocess`` and spoken to over two pipes: length-prefixed pickles
of ``(call id, function name, args)`` one way, ``(call id, ok, value, traceback)`` the other.
Its life is tied to the pipe: it ends when the worker closes it or dies, after the call in hand.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..figures import Registry
from . import work

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the ``src`` package
CALLS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (work.open_writer, work.add_item, work.close_writer, work.abort_writer)
}
STOP_TIMEOUT = 60.0  # seconds a stopping process may take to finish its item


class BrokenJobProcess(concurrent.futures.BrokenExecutor):
    """The job process ended while calls were pending."""


class RemoteTraceback(Exception):
    """Carries the job process's traceback, so the worker's log shows where it failed."""

    def __str__(self) -> str:
        return str(self.args[0])


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    """The next message, or ``None`` at the end of the pipe."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    return pickle.loads(stream.read(int.from_bytes(head, "big")))


class JobProcess(concurrent.futures.Executor):
    """An executor of ``work`` functions in a child process (calls run one after another)."""

    def __init__(self, registry: Registry) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from src.jobs.process import serve; serve({to_child_r}, {from_child_w})"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = self._proc.pid
        self._out = os.fdopen(to_child_w, "wb")
        self._in = os.fdopen(from_child_r, "rb")
        self._lock = threading.Lock()
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._ids = itertools.count()
        self._broken = False
        self._closed = False
        _send(self._out, registry)  # the figures, pickled by reference to their modules
        self._reader = threading.Thread(
            target=self._read_replies, name="figserve-jobproc", daemon=True
        )
        self._reader.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if kwargs or CALLS.get(fn.__name__) is not fn:
            raise ValueError(f"a job process runs only {', '.join(CALLS)} with positional args")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the job process is shut down")
            if self._broken:
                raise BrokenJobProcess("the job process has stopped")
            call_id = next(self._ids)
            self._pending[call_id] = future
            try:
                _send(self._out, (call_id, fn.__name__, args))
            except OSError:
                self._pending.pop(call_id)
                self._broken = True
                raise BrokenJobProcess("the job process has stopped") from None
        return future

    def _read_replies(self) -> None:
        try:
            while (message := _receive(self._in)) is not None:
                call_id, ok, value, remote = message
                with self._lock:
                    future = self._pending.pop(call_id)
                if ok:
                    future.set_result(value)
                else:
                    value.__cause__ = RemoteTraceback(remote)
                    future.set_exception(value)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass  # the process died mid-message: same as the end of the pipe
        finally:
            with self._lock:
                self._broken = True
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(BrokenJobProcess("the job process stopped"))
            self._in.close()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self._out.close()  # the process ends after the call in hand
        if not wait:
            return
        try:
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=STOP_TIMEOUT)


def serve(read_fd: int, write_fd: int) -> None:
    """The job process's main loop: run calls until the worker closes the pipe."""
    # Signals for the server (Ctrl-C, a SIGTERM to the process group) are the worker's to act
    # on; this process stops when the worker closes the pipe, so no item is cut in half.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(AttributeError, OSError):
        os.nice(work.NICE)
    with os.fdopen(read_fd, "rb") as calls, os.fdopen(write_fd, "wb") as replies:
        work.use_registry(_receive(calls))
        while (message := _receive(calls)) is not None:
            call_id, name, args = message
            try:
                reply = (call_id, True, CALLS[name](*args), None)
            except Exception as exc:
                reply = (call_id, False, _portable(exc), traceback.format_exc())
            try:
                _send(replies, reply)
            except BrokenPipeError:
                return  # the worker is gone


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives pickling, else a plain one with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
