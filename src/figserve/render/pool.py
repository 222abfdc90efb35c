"""The worker's side of the render processes: start them warm, hand them work, supervise them.

``RenderPool.run`` is called from a render thread: it takes an idle render process of its lane,
sends the task and waits for the answer on a socket, with the GIL released. Supervision:

- a render past its deadline gets its process killed (and replaced); the caller learns whether
  the figure used its CPU all along (too complex, 422) or the machine was busy (503);
- a process that dies mid-render (segfault, OOM killer) costs that render only;
- processes are recycled after ``recycle_after`` renders, past ``recycle_rss_bytes``, and after
  any failure, and run under an address-space cap;
- ``close`` kills every process at once, so a stopping worker never waits for a render.

Render processes are forked from one warm fork server per Python process (see
``forkserver.py``), shared by every pool of that process the way ``multiprocessing`` shares its
forkserver: a fork takes milliseconds where a fresh interpreter takes a second.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RenderCrashed, RenderFailed, RenderTimeout, RenderUnavailable, TooComplex
from .forkserver import (
    ServerInit,
    SpawnOptions,
    Task,
    recv_control,
    recv_obj,
    send_control,
    send_obj,
)

log = logging.getLogger("figserve.render")

# The folder that holds the ``figserve`` package, so a fork server finds it from any directory.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
START_TIMEOUT = 60.0  # a fork server imports matplotlib and the figures, then warms up
CONTROL_TIMEOUT = 10.0  # a fork takes milliseconds; a server this slow is stuck
ACQUIRE_TIMEOUT = 30.0
# A render killed at its deadline after using at least this share of it in CPU time was
# drawing (too complex); less means it mostly waited. With every core busy a render process
# still gets 1/workers of one, so the share is set below that.
CPU_BOUND_SHARE = 0.25
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class PoolSettings:
    processes: int  # interactive lane: pages, images, API
    background: int  # background lane (jobs), niced
    deadline: float  # seconds one render may take in its process
    memory_bytes: int  # address space a render process may grow by; 0: no cap
    recycle_after: int  # renders per process before it is replaced
    recycle_rss_bytes: int  # resident size past which a process is replaced
    background_nice: int = 10


@dataclass(frozen=True)
class Outcome:
    value: Any
    cpu_seconds: float  # CPU time the render process spent on it
    pid: int


def _import_path() -> list[str]:
    """``sys.path`` with every entry absolute ('' is the current directory): render processes
    import figure modules, the user's own among them, from the same folders as the worker."""
    cwd = os.getcwd()
    return [os.path.abspath(p) if p else cwd for p in sys.path]


# -- the fork server handle --------------------------------------------------------------


class ForkServer:
    """A running fork server; ``spawn`` gives a new render process and its socket."""

    def __init__(self, init: ServerInit) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {
            **os.environ,
            # One render process per core already: numeric libraries must not add threads.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from figserve.render.forkserver import main; main(sys.argv)"
        )
        with child_end:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.pid = self._proc.pid
        self._ctrl = parent_end
        self._lock = threading.Lock()
        self._preloaded = set(init.preload)
        try:
            send_control(self._ctrl, init)
            reply = self._reply(START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        if reply[0] != "ready":
            self.close()
            raise RuntimeError(f"render fork server did not start: {reply!r}")

    def _reply(self, timeout: float) -> Any:
        self._ctrl.settimeout(timeout)
        message, fds = recv_control(self._ctrl)
        for fd in fds:
            os.close(fd)
        return message

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def preload(self, modules: list[str]) -> None:
        """Import ``modules`` in the server, so render processes start with them loaded."""
        missing = [m for m in modules if m not in self._preloaded]
        if not missing:
            return
        with self._lock:
            # The worker's import path now: a module of the user's may come from a folder added
            # after this server started.
            send_control(self._ctrl, ("preload", missing, _import_path()))
            reply = self._reply(START_TIMEOUT)
        if reply[0] != "ok":
            raise RuntimeError(f"render processes cannot import {', '.join(missing)}: {reply[1]}")
        self._preloaded.update(missing)

    def spawn(self, options: SpawnOptions) -> RenderProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock, theirs:
                send_control(self._ctrl, ("spawn", options), theirs.fileno())
                reply = self._reply(CONTROL_TIMEOUT)
        except BaseException:
            ours.close()
            raise
        return RenderProcess(reply[1], ours)

    def close(self, timeout: float = 5.0) -> None:
        # Its render processes die with it (PR_SET_PDEATHSIG) or at their socket's end.
        with contextlib.suppress(OSError):
            self._ctrl.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_server_lock = threading.Lock()
_server: ForkServer | None = None


def fork_server(preload: list[str], warm_up: Task | None = None) -> ForkServer:
    """This process's fork server, started (or restarted, if it died) on first use."""
    global _server
    with _server_lock:
        if _server is not None and not _server.alive:
            log.error("render fork server %d died; starting a new one", _server.pid)
            _server.close()
            _server = None
        if _server is None:
            started = time.perf_counter()
            _server = ForkServer(ServerInit(_import_path(), list(preload), warm_up))
            log.info(
                "render fork server %d ready in %.0f ms",
                _server.pid,
                (time.perf_counter() - started) * 1000,
            )
        server = _server
    server.preload(preload)
    return server


@atexit.register
def _close_fork_server() -> None:
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.close()


# -- one render process --------------------------------------------------------------------


class RenderProcess:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.renders = 0
        self.cpu = 0.0  # its CPU time at the end of its last render
        try:
            # A handle that cannot reach another process after this pid is reused.
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def cpu_now(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def exited(self) -> bool:
        """Whether the process has ended (its pidfd is readable then)."""
        if self._pidfd is None:
            return not os.path.exists(f"/proc/{self.pid}")
        readable, _, _ = select.select([self._pidfd], [], [], 0)
        return bool(readable)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None


class _Lane:
    """Render processes for one kind of work; at most ``size`` of them exist at once."""

    def __init__(self, name: str, size: int, options: SpawnOptions) -> None:
        self.name = name
        self.size = size
        self.options = options
        self.idle: list[RenderProcess] = []
        self.live: set[RenderProcess] = set()
        self.reserved = 0  # spawns under way
        self.closed = False
        self.cond = threading.Condition()

    def take(self, timeout: float) -> RenderProcess | None:
        """An idle process, or None when the caller may spawn one (a place is reserved)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.closed:
                    raise RenderUnavailable("the server is stopping")
                if self.idle:
                    return self.idle.pop()
                if len(self.live) + self.reserved < self.size:
                    self.reserved += 1
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.cond.wait(remaining):
                    raise RenderUnavailable(f"no {self.name} render process became free")

    def reserve(self) -> bool:
        """Reserve a place for a new process if the lane is short of its size."""
        with self.cond:
            if self.closed or len(self.live) + self.reserved >= self.size:
                return False
            self.reserved += 1
            return True

    def admit(self, proc: RenderProcess) -> bool:
        """Count a newly spawned process (its place was reserved); False if closing."""
        with self.cond:
            self.reserved -= 1
            if self.closed:
                self.cond.notify()
                return False
            self.live.add(proc)
            return True

    def unreserve(self) -> None:
        with self.cond:
            self.reserved -= 1
            self.cond.notify()

    def drop_exited(self) -> list[RenderProcess]:
        """Take the idle processes that have ended out of the lane, and return them."""
        with self.cond:
            gone = [p for p in self.idle if p.exited()]
            for proc in gone:
                self.idle.remove(proc)
                self.live.discard(proc)
            return gone

    def give_back(self, proc: RenderProcess) -> None:
        with self.cond:
            if proc in self.live and not self.closed:
                self.idle.append(proc)
                self.cond.notify()

    def drop(self, proc: RenderProcess) -> None:
        with self.cond:
            self.live.discard(proc)
            self.cond.notify()

    def close(self) -> tuple[list[RenderProcess], list[RenderProcess]]:
        """Close the lane; return its idle and its busy processes."""
        with self.cond:
            self.closed = True
            idle = list(self.idle)
            busy = [p for p in self.live if p not in idle]
            self.live.clear()
            self.idle.clear()
            self.cond.notify_all()
        return idle, busy


class RenderPool:
    """The render processes of one app: create when serving starts, ``close`` when it stops."""

    def __init__(
        self, settings: PoolSettings, preload: list[str], warm_up: Task | None = None
    ) -> None:
        self.settings = settings
        self._preload = preload
        self._warm_up = warm_up
        self._lanes = {
            False: _Lane("interactive", settings.processes, SpawnOptions(0, settings.memory_bytes)),
            True: _Lane(
                "background",
                settings.background,
                SpawnOptions(settings.background_nice, settings.memory_bytes),
            ),
        }
        self._server: ForkServer | None = None
        self.started = False
        self.closed = False
        self._reviving = False
        self._reviving_lock = threading.Lock()
        self.kills = 0  # processes killed at the deadline
        self.crashes = 0
        self.recycled = 0

    def start(self) -> None:
        """Start the fork server if this process has none, then every render process."""
        self._server = fork_server(self._preload, self._warm_up)
        for lane in self._lanes.values():
            while lane.reserve():
                lane.give_back(self._spawn_into(lane))
        self.started = True

    @property
    def healthy(self) -> bool:
        """Can take work: started, not closing, and its fork server runs. A dead fork server is
        replaced in the background (a server taken out of rotation gets no render that would
        replace it)."""
        if not self.started or self.closed:
            return False
        server = self._server
        with self._reviving_lock:
            # Ready once the revival has also replaced the render processes.
            if self._reviving:
                return False
            if server is not None and server.alive:
                return True
            self._reviving = True
            threading.Thread(target=self._revive, name="figserve-revive", daemon=True).start()
        return False

    def _revive(self) -> None:
        try:
            self._server = fork_server(self._preload, self._warm_up)
            for lane in self._lanes.values():
                for proc in lane.drop_exited():
                    proc.close()
                while lane.reserve():
                    lane.give_back(self._spawn_into(lane))
        except Exception:
            log.exception("cannot start the render fork server again; readiness stays 503")
        finally:
            with self._reviving_lock:
                self._reviving = False

    def pids(self) -> list[int]:
        return sorted(p.pid for lane in self._lanes.values() for p in list(lane.live))

    def _spawn_into(self, lane: _Lane) -> RenderProcess:
        try:
            server = self._server if self._server is not None and self._server.alive else None
            if server is None:
                server = self._server = fork_server(self._preload, self._warm_up)
            try:
                proc = server.spawn(lane.options)
            except (OSError, EOFError, TimeoutError):
                # The server died or hangs: one restart, then give up for this render.
                server.close(timeout=1.0)
                server = self._server = fork_server(self._preload, self._warm_up)
                proc = server.spawn(lane.options)
        except BaseException:
            lane.unreserve()
            raise
        if not lane.admit(proc):
            proc.kill()
            proc.close()
            raise RenderUnavailable("the server is stopping")
        return proc

    def _acquire(self, lane: _Lane) -> RenderProcess:
        proc = lane.take(ACQUIRE_TIMEOUT)
        if proc is not None:
            return proc
        try:
            return self._spawn_into(lane)
        except RenderUnavailable:
            raise
        except Exception as exc:
            log.exception("cannot start a render process")
            raise RenderUnavailable("no render process can be started") from exc

    def _retire(self, lane: _Lane, proc: RenderProcess, kill: bool) -> None:
        """Take ``proc`` out of service and put a fresh process in its place."""
        if kill:
            proc.kill()
        proc.close()  # a process not killed exits when it reads the end of its socket
        lane.drop(proc)
        if self.closed:
            return
        try:
            if lane.reserve():
                lane.give_back(self._spawn_into(lane))
        except RenderUnavailable:
            pass
        except Exception:
            log.exception("cannot replace a render process; the next render will try again")

    def run(
        self,
        task: Task,
        png_level: int,
        *,
        background: bool = False,
        deadline: float | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> Outcome:
        """Run ``task`` in a render process of the lane; blocks, so call from a thread.
        ``deadline`` (seconds) replaces the pool's for a task known to take longer;
        ``on_start`` is called once a process has the task."""
        lane = self._lanes[background]
        for _ in range(2):
            proc = self._acquire(lane)
            try:
                send_obj(proc.sock, (task, png_level))
                break
            except OSError:
                # It died while idle: the task never started, so another process may run it.
                self._retire(lane, proc, kill=True)
        else:
            raise RenderCrashed("render processes die as they start")
        if on_start is not None:
            on_start()
        deadline = deadline or self.settings.deadline
        try:
            status, value, cpu_total, rss = recv_obj(proc.sock, time.monotonic() + deadline)
        except TimeoutError:
            cpu = proc.cpu_now()
            used = None if cpu is None else cpu - proc.cpu
            self.kills += 1
            self._retire(lane, proc, kill=True)
            if used is not None and used >= CPU_BOUND_SHARE * deadline:
                raise TooComplex(
                    f"drawing took more than {deadline:g} s of CPU time and was stopped",
                    stopped=True,
                ) from None
            raise RenderTimeout(
                f"render took longer than {deadline:g} s and was stopped", stopped=True
            ) from None
        except (EOFError, OSError):
            self._retire(lane, proc, kill=True)
            if self.closed:
                raise RenderUnavailable("the server is stopping") from None
            self.crashes += 1
            raise RenderCrashed("the render process died during the render") from None
        cpu, proc.cpu = cpu_total - proc.cpu, cpu_total
        proc.renders += 1
        healthy = status == "ok"
        if (
            not healthy
            or proc.renders >= self.settings.recycle_after
            or rss > self.settings.recycle_rss_bytes
        ):
            self.recycled += 1
            self._retire(lane, proc, kill=False)
        else:
            lane.give_back(proc)
        if status == "ok":
            return Outcome(value, cpu, proc.pid)
        if status == "memory":
            limit = self.settings.memory_bytes // 2**20
            raise TooComplex(f"drawing needed more than the {limit} MiB a render may use")
        message, remote = value
        raise RenderFailed(message, remote)

    def close(self) -> None:
        """Kill every render process now; renders in flight end with ``RenderUnavailable``."""
        self.closed = True
        for lane in self._lanes.values():
            idle, busy = lane.close()
            for proc in idle:
                proc.kill()
                proc.close()
            for proc in busy:
                # Its render thread is reading the socket: wake it with the end of the stream
                # and let that thread close it, so the descriptor is never reused under it.
                proc.kill()
                with contextlib.suppress(OSError):
                    proc.sock.shutdown(socket.SHUT_RDWR)
