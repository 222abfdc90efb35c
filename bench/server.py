"""The one way the benchmark starts a server, and stops it.

A ``Server`` runs one command (Hypercorn with figserve, the Flask reference on Flask's server or
on Gunicorn) on a free 127.0.0.1 port, in a process group of its own, with its output in a log
file. It is ready once its workers have said so and a probe URL answers 200. ``stop`` sends
SIGTERM to the master, waits, and then makes sure no process of the group is left: SIGKILL only
past the timeout. It depends on nothing but the standard library and ``bench.procs``, so the
test suite can share it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from . import procs

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0  # above hypercorn.toml's graceful_timeout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def shipped_hypercorn() -> dict[str, Any]:
    with open(ROOT / "hypercorn.toml", "rb") as f:
        return tomllib.load(f)


@dataclass(frozen=True)
class Layout:
    """Hypercorn workers x render processes per worker x render threads per worker.

    ``processes`` is None where the server has no such setting (only threads render).
    """

    workers: int
    processes: int | None
    threads: int

    LIMITS: ClassVar[dict[str, int]] = {"workers": 16, "processes": 16, "threads": 64}

    @classmethod
    def parse(cls, text: str) -> Layout:
        """``WxPxT``, e.g. ``2x2x4``: 2 workers, 2 render processes and 4 threads each."""
        m = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)\s*", text)
        if not m:
            raise ValueError(f"layout {text!r}: expected workers x processes x threads, e.g. 2x2x4")
        w, p, t = (int(g) for g in m.groups())
        for name, value in (("workers", w), ("processes", p), ("threads", t)):
            if not 1 <= value <= cls.LIMITS[name]:
                raise ValueError(f"layout {text!r}: {name} must be 1-{cls.LIMITS[name]}")
        return cls(w, p, t)

    @classmethod
    def shipped(cls) -> Layout:
        """What ``hypercorn.toml`` and figserve's settings (with this environment) give."""
        from figserve.config import Settings

        settings = Settings.from_env()
        workers = int(shipped_hypercorn().get("workers", 1)) or 1
        # 0 means one per usable core, and threads 0 one per render process
        processes = settings.processes
        return cls(workers, processes, settings.render_threads or processes)

    def env(self) -> dict[str, str]:
        out = {"FIGSERVE_RENDER_THREADS": str(self.threads)}
        if self.processes is not None:
            out["FIGSERVE_RENDER_PROCESSES"] = str(self.processes)
        return out

    @property
    def capacity(self) -> int:
        """Renders the server can run at once: each needs a thread, and a process if it has any."""
        per_worker = self.threads if self.processes is None else min(self.processes, self.threads)
        return self.workers * per_worker

    def __str__(self) -> str:
        return f"{self.workers}x{'-' if self.processes is None else self.processes}x{self.threads}"


@dataclass(frozen=True)
class StopReport:
    exit_code: int | None
    seconds: float  # from SIGTERM to the master's exit
    killed: bool  # SIGKILL was needed
    leftovers: int  # processes of its group still alive once the master had exited


class Server:
    """One server command in its own process group; a context manager that starts and stops it."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
        ready_text: str | None = None,
        ready_count: int = 1,
        probe: str = "/",
        temp_dirs: list[Path] | None = None,
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.env = env or {}
        self.ready_text = ready_text
        self.ready_count = ready_count
        self.probe = probe
        self.log_path = log_dir / f"{name}.log"
        self._temp_dirs = temp_dirs or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped: StopReport | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            if self._said_ready() and self._probe_ok():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout:g} s:\n{self.tail()}")

    def _said_ready(self) -> bool:
        return self.ready_text is None or self.output().count(self.ready_text) >= self.ready_count

    def _probe_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.probe, timeout=5) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> StopReport:
        """SIGTERM to the master; then no process of its group may be left."""
        if self.stopped is not None:
            return self.stopped
        if self.proc is None:
            self.stopped = StopReport(None, 0.0, False, 0)
            return self.stopped
        t0 = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self._kill_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        seconds = time.monotonic() - t0
        left = procs.group_members(self.proc.pid)
        if left:
            # Orphans of a master that exited early: asked to stop, then killed.
            self._kill_group(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while procs.group_members(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if procs.group_members(self.proc.pid):
                killed = True
                self._kill_group(signal.SIGKILL)
        for path in self._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.stopped = StopReport(self.proc.returncode, seconds, killed, len(left))
        return self.stopped

    def _kill_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what it is doing ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def output(self, since: int = 0) -> str:
        """Its log from byte offset ``since``."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def workers(self) -> list[int]:
        return procs.worker_pids(self.pid) or [self.pid]

    def memory(self, renders: int = 0) -> procs.MemorySnapshot:
        return procs.memory(self.pid, renders)

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.pid)


# --- the servers the benchmark runs ------------------------------------------------------------


def figserve(
    name: str,
    log_dir: Path,
    workers: int | None = None,
    env: dict[str, str] | None = None,
    toml: dict[str, Any] | None = None,
    app: str = "src.app:app",
) -> Server:
    """``hypercorn --config hypercorn.toml src.app:app`` on a free port, with its own jobs folder.

    ``toml`` overrides keys of the shipped hypercorn.toml (None removes one): the merged file is
    written next to the log and used instead.
    """
    port = free_port()
    config = "hypercorn.toml"
    settings = shipped_hypercorn()
    if toml:
        settings = {k: v for k, v in {**settings, **toml}.items() if v is not None}
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"{name}.toml"
        # JSON strings, numbers, booleans and lists read the same in TOML.
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
        config = str(path)
    cmd = [sys.executable, "-m", "hypercorn", "--config", config, "--bind", f"{HOST}:{port}"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    cmd.append(app)
    count = workers if workers is not None else int(settings.get("workers", 1)) or 1
    # Jobs share a folder between the workers of one server; never with another server.
    jobs_dir = Path(tempfile.mkdtemp(prefix="figserve-bench-jobs-"))
    return Server(
        name,
        cmd,
        port,
        log_dir,
        env={"FIGSERVE_JOBS_DIR": str(jobs_dir), **(env or {})},
        ready_text="Running on",
        ready_count=count,
        probe="/readyz",
        temp_dirs=[jobs_dir],
    )


def flask_dev(name: str, log_dir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.flask_ref", "--port", str(port)]
    return Server(name, cmd, port, log_dir, ready_text="Running on", probe="/normal/5_3")


GUNICORN_THREADS = 4


def gunicorn(name: str, log_dir: Path) -> Server:
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
        "--workers", str(procs.CORES), "--threads", str(GUNICORN_THREADS),
        "--bind", f"{HOST}:{port}", "--graceful-timeout", "10", "bench.flask_ref:app",
    ]  # fmt: skip
    return Server(
        name,
        cmd,
        port,
        log_dir,
        ready_text="Booting worker",
        ready_count=procs.CORES,
        probe="/normal/5_3",
    )
