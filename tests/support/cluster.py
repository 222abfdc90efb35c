"""Scale-out mode on one machine, all on 127.0.0.1: a Redis, figserve instances (each with a
jobs folder of its own: no shared disk), standalone job workers and nginx in front.

Every part is a real process, started here and stopped at the end; the instances and workers
run the test app (``tests.support.app``), so gated figures let a test hold renders where it
wants them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.live import ROOT, LiveServer
from tests.support.nginx import Nginx
from tests.support.procs import group_pids
from tests.support.redis import RedisServer
from tests.support.waiting import until_sync

# Short heartbeats and sweeps, so a killed process's work is taken back within seconds.
FAST_RECOVERY = {
    "FIGSERVE_JOB_STALE_AFTER": "2",
    "FIGSERVE_JOB_POLL_INTERVAL": "0.2",
    "FIGSERVE_WARM_UP": "false",
    "FIGSERVE_RENDER_PROCESSES": "1",
    "FIGSERVE_JOB_THREADS": "1",
    # A loaded test machine may keep an event loop busy for a while: the shared cache should
    # not give up on a Redis that answers (the degradation test sets its own, short).
    "FIGSERVE_REDIS_CACHE_TIMEOUT": "2",
}


def scaleout_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {**FAST_RECOVERY, "FIGSERVE_REDIS_URL": redis_url, **extra}


class JobWorker:
    """``python -m figserve.jobs.worker`` in a process group of its own, with the test figures
    (loaded as any user's figure module is)."""

    def __init__(self, env: dict[str, str], figures: str = "tests.support.testfigures") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "figserve.jobs.worker"],
            cwd=ROOT,
            env={**os.environ, "FIGSERVE_FIGURES": figures, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def start(self, timeout: float = 60) -> JobWorker:
        until_sync(
            lambda: "job worker ready" in self.output or self.proc.poll() is not None,
            "the job worker to start",
            timeout,
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"job worker exited ({self.proc.returncode}):\n{self.output}")
        return self

    def pids(self) -> set[int]:
        """The worker and its fork server and render processes."""
        return group_pids(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the whole group: the machine it runs on is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            self._pump.join(timeout=10)


def kill_instance(server: LiveServer) -> None:
    """SIGKILL an instance's every process at once: its machine is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)


@dataclass
class Cluster:
    redis: RedisServer
    instances: list[LiveServer]
    workers: list[JobWorker]
    nginx: Nginx
    jobs_dirs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nginx.url

    def pids_of(self, server: LiveServer) -> set[int]:
        return group_pids(server.proc.pid)


@contextmanager
def cluster(instances: int = 2, workers: int = 1, **env: str) -> Iterator[Cluster]:
    with ExitStack() as stack:
        redis = RedisServer().start()
        stack.callback(redis.stop)
        base = scaleout_env(redis.url, **env)
        servers, dirs = [], []
        for _ in range(instances):
            jobs_dir = Path(tempfile.mkdtemp(prefix="figserve-instance-jobs-"))
            dirs.append(jobs_dir)
            server = LiveServer(
                workers=1,
                env={**base, "FIGSERVE_JOBS_DIR": str(jobs_dir)},
                app="tests.support.app:app",
            )
            stack.callback(_stop_server, server)
            servers.append(server)
        job_workers = [JobWorker(base) for _ in range(workers)]
        for worker in job_workers:
            stack.callback(_stop_worker, worker)
        for server in servers:
            server.start()
        for worker in job_workers:
            worker.start()
        front = Nginx([f"127.0.0.1:{s.port}" for s in servers]).start()
        stack.callback(front.stop)
        for jobs_dir in dirs:
            stack.callback(_remove, jobs_dir)
        yield Cluster(redis, servers, job_workers, front, dirs)


def _stop_server(server: LiveServer) -> None:
    if server.proc.poll() is None:
        server.stop()
    # Nothing of it may be left behind (render processes die with their worker).
    until_sync(lambda: not group_pids(server.proc.pid), "the instance's processes to end", 15)


def _stop_worker(worker: JobWorker) -> None:
    if worker.proc.poll() is None:
        worker.stop()
    until_sync(lambda: not group_pids(worker.proc.pid), "the job worker's processes to end", 15)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
