"""A real Hypercorn server in a subprocess, on a free 127.0.0.1 port, for live tests."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The shipped ``hypercorn.toml`` with the port overridden (and optionally the workers)."""

    def __init__(
        self,
        workers: int | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        app: str = "src.app:app",
        shell: str | None = None,
        cwd: Path = ROOT,
        launcher: bool = False,
    ) -> None:
        """``shell``: a command line run by bash instead (a README's, say), with ``{port}``
        standing for the free port; stop it with ``stop(group=True)``. ``launcher``: run
        ``python -m figserve serve`` (figserve's master) instead of Hypercorn's."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        if shell is not None:
            cmd = ["bash", "-c", shell.replace("{port}", str(self.port))]
        elif launcher:
            cmd = [
                sys.executable,
                "-m",
                "figserve",
                "serve",
                "--config",
                str(ROOT / "hypercorn.toml"),
            ]
            cmd += ["--bind", f"127.0.0.1:{self.port}", "--app", app]
            if workers is not None:
                cmd += ["--workers", str(workers)]
            cmd += list(args)
        else:
            cmd = [sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml"]
            cmd += ["--bind", f"127.0.0.1:{self.port}"]
            if workers is not None:
                cmd += ["--workers", str(workers)]
            cmd += [*args, app]
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so a test can signal all of it
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line)
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        """Block until ``text`` has appeared in ``count`` output lines (or fail with the log)."""
        deadline = time.monotonic() + timeout
        seen = sum(text in line for line in self.lines)
        while seen < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{text!r} not seen {count}x; output:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"server exited ({self.proc.wait()}); output:\n{self.output}")
            seen += text in line

    def start(self) -> LiveServer:
        # Each worker logs "Running on" once its startup (pool, warm-up) is complete.
        self.wait_for("Running on", count=self.workers or _configured_workers())
        return self

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, group: bool = False, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        finally:
            self._pump_thread.join(timeout=10)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]


def _configured_workers() -> int:
    import tomllib

    with open(ROOT / "hypercorn.toml", "rb") as f:
        return int(tomllib.load(f).get("workers", 1)) or 1


@contextmanager
def live_server(**kwargs: object) -> Iterator[LiveServer]:
    server = LiveServer(**kwargs)  # type: ignore[arg-type]
    try:
        yield server.start()
    finally:
        if server.proc.poll() is None:
            server.stop(group="shell" in kwargs)
