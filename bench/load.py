"""Load from ``wrk``: closed loop, a fixed duration per run, so every run is bounded in time and
traffic; several runs at once with start offsets (a load plus a paced prober)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
MAX_SECONDS = 120.0  # no single load runs longer
MAX_CONNECTIONS = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class WrkResult:
    path: str
    connections: int
    threads: int
    seconds: float
    delay_ms: int  # pause of each connection between its requests (0: closed loop)
    requests: int
    ok: int  # 2xx and 3xx
    ok_rps: float
    non2xx: int  # wrk counts 4xx and 5xx
    socket_errors: int  # connect, read, write
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    bytes: int
    wrk_cpu_share: float  # cores wrk itself kept busy
    statuses: dict[str, int] | None = None  # only when counted
    no_retry_after: int | None = None  # 503s without Retry-After, when counted

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors + self.timeouts


def wrk(
    url: str,
    connections: int,
    seconds: float,
    threads: int | None = None,
    timeout: float = 10,
    delay_ms: int = 0,
    paths: list[str] | None = None,
    count_status: bool = False,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """One bounded wrk run. ``paths`` replaces the URL's path with these, in turn; ``headers``
    are sent with every request."""
    if not 0 < seconds <= MAX_SECONDS or not 0 < connections <= MAX_CONNECTIONS:
        raise ValueError(f"unbounded load: {connections} connections for {seconds} s")
    threads = min(threads or 2, connections)
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", f"{timeout:g}s", "-s", str(WRK_SCRIPT),
    ]  # fmt: skip
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    env = {**os.environ, "WRK_DELAY_MS": str(delay_ms), "WRK_STATUS": "1" if count_status else ""}
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="bench-paths-") as listing:
        if paths:
            listing.write("\n".join(paths) + "\n")
            listing.flush()
            env["WRK_PATHS"] = listing.name
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert proc.stdout is not None
        try:
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: the load stops with the run
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    r = json.loads(line.removeprefix("BENCH_JSON "))
    secs = r["duration_us"] / 1e6
    ok = r["requests"] - r["status"]
    return WrkResult(
        path=path_of(url) if not paths else f"{len(paths)} paths",
        connections=connections,
        threads=threads,
        seconds=secs,
        delay_ms=delay_ms,
        requests=r["requests"],
        ok=ok,
        ok_rps=ok / secs,
        non2xx=r["status"],
        socket_errors=r["connect"] + r["read"] + r["write"],
        timeouts=r["timeout"],
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        bytes=r["bytes"],
        wrk_cpu_share=(usage.ru_utime + usage.ru_stime) / secs,
        statuses=r["statuses"] if count_status else None,
        no_retry_after=r["no_retry_after"] if count_status else None,
    )


def path_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def together(*runs: tuple[float, Callable[[], T]]) -> list[T]:
    """Run each ``(start offset in seconds, function)`` at once; their results in order."""

    def one(offset: float, fn: Callable[[], T]) -> T:
        time.sleep(offset)
        return fn()

    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        futures = [pool.submit(one, offset, fn) for offset, fn in runs]
        return [f.result() for f in futures]
