"""The master of ``python -m figserve serve``: Hypercorn's workers, supervised.

It reads ``hypercorn.toml`` (``hyperconfig.py``), makes the listening sockets once and starts
``workers`` worker processes (``worker.py``), each in a process group of its own with its fork
server and render processes, each given the sockets as ``fd://``. Then:

- **start**: every worker says ``ready`` once its app serves. A worker that fails to start
  stops the others; the failure's one-line message is the last thing printed, and the exit
  status says it failed (2: the configuration, 1: anything else).
- **serve**: a worker that dies is replaced; if workers keep dying (``RESTARTS`` within
  ``RESTART_WINDOW`` seconds) the server stops with status 1 rather than flap.
- **stop** (SIGTERM or SIGINT): each worker stops accepting and finishes its requests within
  ``graceful_timeout``; past ``graceful_timeout + STOP_MARGIN`` every process still there, in
  every worker's process group, is killed with SIGKILL. A second signal kills at once.
  Nothing is left behind: the master exits only once every worker has been reaped and its
  process group is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType

from hypercorn.config import Sockets

from .. import logsafe, startup
from .hyperconfig import ServerConfig

STOP_MARGIN = 5.0  # seconds past graceful_timeout before the master kills what is left
RESTARTS = 5  # worker deaths...
RESTART_WINDOW = 60.0  # ...within this many seconds stop the server
START_MARGIN = 30.0  # seconds past Hypercorn's startup_timeout for a worker to be ready

log = logging.getLogger("figserve.launch")


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    status: int  # read end of the worker's status pipe
    lifeline: int  # write end; the worker stops when it closes
    started: float
    ready: bool = False
    failure: tuple[int, str] | None = None
    pending: bytes = b""

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Supervisor:
    server: ServerConfig
    app: str
    sockets: Sockets
    workers: list[_Worker] = field(default_factory=list)
    deaths: deque[float] = field(default_factory=deque)
    signals: list[int] = field(default_factory=list)

    # -- signals ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # acted on by the loop, which the wakeup fd woke

    def _install_signals(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        return wake_r

    def _stop_asked(self) -> int | None:
        """The first stop signal received and not handled yet, if any."""
        while self.signals:
            signum = self.signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                return signum
            if signum == signal.SIGHUP:
                log.warning("SIGHUP ignored: stop and start the server to reload it")
        return None

    # -- workers ----------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        status_r, status_w = os.pipe()
        life_r, life_w = os.pipe()
        fds = {
            "bind": [s.fileno() for s in self.sockets.secure_sockets]
            or [s.fileno() for s in self.sockets.insecure_sockets],
            "insecure": [s.fileno() for s in self.sockets.insecure_sockets]
            if self.sockets.secure_sockets
            else [],
            "quic": [s.fileno() for s in self.sockets.quic_sockets],
        }
        command = [sys.executable, "-m", "figserve.launch.worker", "--app", self.app]
        command += ["--config", json.dumps(self.server.mapping), "--sockets", json.dumps(fds)]
        command += ["--status-fd", str(status_w), "--lifeline-fd", str(life_r)]
        every_fd = [status_w, life_r, *(fd for group in fds.values() for fd in group)]
        try:
            proc = subprocess.Popen(command, pass_fds=every_fd, start_new_session=True)
        finally:
            os.close(status_w)
            os.close(life_r)
        os.set_blocking(status_r, False)
        worker = _Worker(proc, status_r, life_w, time.monotonic())
        self.workers.append(worker)
        return worker

    def _read(self, worker: _Worker) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(worker.status, 4096):
                worker.pending += chunk
        *lines, worker.pending = worker.pending.split(b"\n")
        for raw in lines:
            words = raw.decode(errors="replace").split(" ", 2)
            if words[0] == "ready":
                worker.ready = True
            elif words[0] == "failed" and len(words) == 3:
                worker.failure = (int(words[1]), words[2])

    def _forget(self, worker: _Worker) -> None:
        """A worker that has exited: its fds closed, whatever is left of its group killed."""
        self._read(worker)
        _kill_group(worker.pid)
        for fd in (worker.status, worker.lifeline):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.workers.remove(worker)

    def _wait(self, wake: int, timeout: float) -> None:
        fds = [wake, *(w.status for w in self.workers)]
        with contextlib.suppress(InterruptedError):
            select.select(fds, [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(wake, 512):
                pass
        for worker in self.workers:
            self._read(worker)

    # -- phases -----------------------------------------------------------------------------

    def run(self) -> int:
        wake = self._install_signals()
        hypercorn = self.server.hypercorn()
        for _ in range(self.server.workers):
            self._spawn()
        log.info(
            "figserve: %d worker%s on %s (%s)",
            self.server.workers,
            "" if self.server.workers == 1 else "s",
            ", ".join(hypercorn.bind),
            self.server.source,
        )
        failure = self._start(wake, hypercorn.startup_timeout + START_MARGIN)
        if failure is not None:
            self._stop(wake, graceful=False)
            status, text = failure
            print(startup.message(text), file=sys.stderr, flush=True)
            return status
        if not self.signals:
            log.info(
                "figserve: ready, %d worker%s", len(self.workers), "s" * (len(self.workers) > 1)
            )
            give_up = self._serve(wake)
            if give_up is not None:
                self._stop(wake, graceful=True)
                print(f"figserve: workers keep failing: {give_up}", file=sys.stderr, flush=True)
                return startup.FAILED
        forced = self._stop(wake, graceful=True)
        return startup.FAILED if forced else 0

    def _start(self, wake: int, timeout: float) -> tuple[int, str] | None:
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self.workers):
            if self._stop_asked() is not None:
                self.signals.append(signal.SIGTERM)  # stop as soon as possible, cleanly
                return None
            for worker in self.workers:
                if worker.failure is not None:
                    return worker.failure
                if worker.proc.poll() is not None:
                    self._read(worker)
                    if worker.failure is not None:
                        return worker.failure
                    return startup.FAILED, f"worker {worker.pid} exited ({_how(worker.proc)})"
            if time.monotonic() > deadline:
                return startup.FAILED, f"the workers were not ready after {timeout:g} s"
            self._wait(wake, min(1.0, deadline - time.monotonic()))
        return None

    def _serve(self, wake: int) -> str | None:
        """Serve until a stop signal; a reason if workers keep dying."""
        while True:
            if self._stop_asked() is not None:
                return None
            for worker in list(self.workers):
                if worker.proc.poll() is None and worker.failure is None:
                    continue
                reason = worker.failure[1] if worker.failure else _how(worker.proc)
                self._forget(worker)
                now = time.monotonic()
                self.deaths.append(now)
                while self.deaths and self.deaths[0] < now - RESTART_WINDOW:
                    self.deaths.popleft()
                if len(self.deaths) > RESTARTS:
                    return f"{len(self.deaths)} deaths in {RESTART_WINDOW:g} s, last: {reason}"
                log.warning("worker %d ended (%s); starting another", worker.pid, reason)
                self._spawn()
            self._wait(wake, 1.0)

    def _stop(self, wake: int, *, graceful: bool) -> bool:
        """Stop every worker; True if any had to be killed."""
        grace = self.server.graceful_timeout if graceful else 0.0
        deadline = time.monotonic() + grace + STOP_MARGIN
        if self.workers:
            log.info(
                "figserve: stopping %d worker%s; requests in flight have %g s",
                len(self.workers),
                "s" * (len(self.workers) > 1),
                grace,
            )
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        forced = False
        while any(w.proc.poll() is None for w in self.workers):
            if self._stop_asked() is not None:
                log.warning("figserve: a second stop signal: killing every process now")
                deadline = 0.0
            if time.monotonic() >= deadline:
                forced = True
                for worker in self.workers:
                    if worker.proc.poll() is None:
                        log.warning("figserve: worker %d still running: killed", worker.pid)
                    _kill_group(worker.pid)
                for worker in self.workers:
                    worker.proc.wait()
                break
            self._wait(wake, min(0.5, deadline - time.monotonic()))
        for worker in list(self.workers):
            if worker.proc.returncode and worker.proc.returncode < 0:
                forced = True  # it ended only by force (its own watchdog's, or ours)
                log.warning("figserve: worker %d %s", worker.pid, _how(worker.proc))
            self._forget(worker)
        for sock in (*self.sockets.secure_sockets, *self.sockets.insecure_sockets):
            sock.close()
        log.info("figserve: stopped")
        return forced


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _how(proc: subprocess.Popen[bytes]) -> str:
    code = proc.returncode
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def serve(server: ServerConfig, app: str) -> int:
    """Run the server until it is stopped; the exit status."""
    logger = logging.getLogger("figserve")
    if not logger.handlers:
        logger.addHandler(logsafe.handler())
        logger.propagate = False
    logger.setLevel(logging.INFO)
    hypercorn = server.hypercorn()
    try:
        sockets = hypercorn.create_sockets()
    except OSError as exc:
        where = ", ".join(hypercorn.bind)
        print(startup.message(f"cannot listen on {where}: {exc.strerror or exc}"), file=sys.stderr)
        return startup.FAILED
    return Supervisor(server, app, sockets).run()
