"""Servers, load generation and measurements shared by the benchmark run and the lever runs.

Every server is started here on a free 127.0.0.1 port with its output in ``results/raw/``, and
stopped with SIGTERM (SIGKILL only if it has not exited after a timeout). Load comes from
``wrk`` with a fixed duration, so every run is bounded in time and traffic.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LOGS = RESULTS / "raw"
WRK_SCRIPT = BENCH / "wrk_report.lua"
HOST = "127.0.0.1"
CORES = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def shipped_workers() -> int:
    with open(ROOT / "hypercorn.toml", "rb") as f:
        return int(tomllib.load(f).get("workers", 1)) or 1


def shipped_hypercorn() -> dict[str, Any]:
    with open(ROOT / "hypercorn.toml", "rb") as f:
        return tomllib.load(f)


class Server:
    """One server process (and its workers) in a process group of its own."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        env: dict[str, str] | None = None,
        ready_text: str | None = None,
        ready_count: int = 1,
        probe: str = "/",
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.ready_text = ready_text
        self.ready_count = ready_count
        self.probe = probe
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self, timeout: float = 90) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output}")
            if (
                self.ready_text is None or self.output.count(self.ready_text) >= self.ready_count
            ) and self._probe_ok():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout:g} s:\n{self.output[-3000:]}")

    def _probe_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.probe, timeout=5) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    @property
    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        """Children that serve requests (not multiprocessing's resource tracker)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        pids = []
        for pid in (int(p) for p in out.stdout.split()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                pids.append(pid)
        return pids or [self.proc.pid]

    def rss_mb(self) -> dict[int, float]:
        return {pid: rss_mb(pid) for pid in self.worker_pids()}

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # Last resort: it ignored SIGTERM for the whole timeout.
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Workers left behind by a master that exited early.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self._log.close()
        return self.proc.returncode


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def figserve(
    name: str = "figserve",
    workers: int | None = None,
    env: dict[str, str] | None = None,
    toml: dict[str, Any] | None = None,
    app: str = "src.app:app",
) -> Server:
    """figserve as shipped: ``hypercorn --config hypercorn.toml src.app:app`` on a free port.

    ``toml`` overrides keys of the shipped hypercorn.toml (for lever runs; None removes one): the
    merged file is written next to the logs and used instead.
    """
    port = free_port()
    config = "hypercorn.toml"
    settings = shipped_hypercorn()
    if toml:
        settings.update(toml)
        settings = {k: v for k, v in settings.items() if v is not None}  # None: leave it out
        LOGS.mkdir(parents=True, exist_ok=True)
        path = LOGS / f"{name}.toml"
        path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items()))
        config = str(path)
    cmd = [sys.executable, "-m", "hypercorn", "--config", config, "--bind", f"{HOST}:{port}"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    cmd += [app]
    count = workers if workers is not None else int(settings.get("workers", 1)) or 1
    return Server(
        name, cmd, port, env=env, ready_text="Running on", ready_count=count, probe="/healthz"
    ).start()


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them read the same


def flask_dev(name: str = "flask-dev") -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.flask_ref", "--port", str(port)]
    return Server(name, cmd, port, ready_text="Running on", probe="/normal/5_3").start()


GUNICORN_THREADS = 4


def gunicorn(name: str = "gunicorn") -> Server:
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
        "--workers", str(CORES), "--threads", str(GUNICORN_THREADS),
        "--bind", f"{HOST}:{port}", "--graceful-timeout", "10", "bench.flask_ref:app",
    ]  # fmt: skip
    return Server(
        name, cmd, port, ready_text="Booting worker", ready_count=CORES, probe="/normal/5_3"
    ).start()


# --- load --------------------------------------------------------------------------------------


def wrk(
    url: str,
    connections: int,
    seconds: float,
    threads: int | None = None,
    timeout: float = 10,
    delay_ms: int = 0,
) -> dict[str, Any]:
    """One bounded wrk run; totals, latency percentiles, error counts and wrk's own CPU use."""
    threads = threads or min(connections, 2)
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", f"{timeout:g}s", "-s", str(WRK_SCRIPT), url,
    ]  # fmt: skip
    env = {**os.environ, "WRK_DELAY_MS": str(delay_ms)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    secs = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "path": _path(url),
        "threads": threads,
        "connections": connections,
        "seconds": secs,
        "requests": r["requests"],
        "ok": r["requests"] - r["status"],
        "rps": r["requests"] / secs,
        "ok_rps": (r["requests"] - r["status"]) / secs,
        "errors": errors,
        "error_detail": {k: r[k] for k in ("connect", "read", "write", "status", "timeout")},
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "bytes": r["bytes"],
        "wrk_cpu_share": (usage.ru_utime + usage.ru_stime) / secs,  # cores wrk kept busy
        "delay_ms": delay_ms,
    }


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def wrk_together(*runs: tuple[dict[str, Any], float]) -> list[dict[str, Any]]:
    """Several wrk runs at once; each is (kwargs, start offset in seconds)."""

    def one(kwargs: dict[str, Any], offset: float) -> dict[str, Any]:
        time.sleep(offset)
        return wrk(**kwargs)

    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        futures = [pool.submit(one, kw, off) for kw, off in runs]
        return [f.result() for f in futures]


def validate_images(
    base_url: str, path: str, count: int = 24, size: tuple[int, int] = (400, 300)
) -> dict[str, Any]:
    """Fetch ``count`` images 12 at a time and check each is a decodable PNG of ``size``."""
    from PIL import Image

    def one(_: int) -> str:
        try:
            with urllib.request.urlopen(base_url + path, timeout=30) as resp:
                data = resp.read()
                if resp.status != 200:
                    return f"status {resp.status}"
            image = Image.open(io.BytesIO(data))
            image.load()
            if image.format != "PNG" or image.size != size:
                return f"{image.format} {image.size}"
            return "ok"
        except urllib.error.HTTPError as exc:
            return f"status {exc.code}"
        except Exception as exc:  # a truncated or garbled body is what is being counted
            return type(exc).__name__

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(one, range(count)))
    bad = [o for o in outcomes if o != "ok"]
    return {"checked": count, "bad": len(bad), "kinds": sorted(set(bad))}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    import platform

    import matplotlib

    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return {
        "cores": CORES,
        "python": platform.python_version(),
        "matplotlib": matplotlib.__version__,
        "wrk": wrk_version.split("[")[0].strip() or "wrk",
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
