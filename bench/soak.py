"""Soak and overload benchmark against a live figserve (the shipped hypercorn.toml, 2 workers).

    .venv/bin/python bench/soak.py            # about 5-8 minutes on 2 cores

1. Soak: 10,000 renders (a mix of figures and formats, mostly unseeded so each one really
   renders) from a few keep-alive clients; each worker's RSS is sampled as it goes. Reports the
   growth per 1,000 renders after a warm-up (goal: < 5 MB) and the 5xx count (goal: 0).
2. Burst: 200 render requests at once, each on its own connection: how many are shed (503).
3. Overload: 10x the admission capacity (workers x FIGSERVE_RENDER_QUEUE_LIMIT) of clients
   rendering for a while, with a prober timing /healthz. Reports statuses (goal: no 5xx but
   503 with Retry-After) and /healthz latency percentiles.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time. Results are written to
bench/results/soak.md, raw samples to bench/results/raw/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from src.config import Settings  # noqa: E402
from tests.live import LiveServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"

# (path, weight): unseeded renders dominate so the soak measures rendering, not the cache.
MIX = [
    ("/figures/normal.png", 4),
    ("/figures/normal.svg?n=300", 1),
    ("/figures/histogram.webp", 2),
    ("/figures/timeseries.png", 2),
    ("/figures/heatmap.jpeg", 1),
    ("/figures/waves.png?w=640&h=400", 1),
    ("/figures/waves.pdf", 1),
    ("/fig/5_3", 2),
    ("/figures/normal.png?seed={seed}", 2),  # a few hundred seeds: cache hits and misses
]


def pick_path(rng: random.Random) -> str:
    paths, weights = zip(*MIX, strict=True)
    path = rng.choices(paths, weights)[0]
    return path.format(seed=rng.randrange(300))


# --- a small HTTP/1.1 client: cheap enough that the client does not starve the server ----------


@dataclass
class Reply:
    status: int
    retry_after: str | None
    seconds: float


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, timeout: float = 60.0) -> Reply:
        t0 = time.perf_counter()
        try:
            return await asyncio.wait_for(self._get(path, t0), timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            self.close()
            return Reply(0, None, time.perf_counter() - t0)  # dropped: counted as a failure

    async def _get(self, path: str, t0: float) -> Reply:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers.get("retry-after"), time.perf_counter() - t0)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# --- process memory ---------------------------------------------------------------------------


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == master and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Soak:
    statuses: Counter = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)  # {"renders": n, "rss": {pid: MB}}
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    health: list[float] = field(default_factory=list)
    health_failures: int = 0


async def soak(port: int, pids: list[int], total: int, clients: int, limit_s: float) -> Soak:
    out = Soak()
    done = 0
    next_sample = 0
    rng = random.Random(1)
    deadline = time.monotonic() + limit_s
    t0 = time.perf_counter()

    def sample() -> None:
        out.samples.append({"renders": done, "rss": {p: rss_mb(p) for p in pids}})

    async def client() -> None:
        nonlocal done, next_sample
        conn = Connection(port)
        while done < total and time.monotonic() < deadline:
            done += 1
            if done % 50 == 0:
                conn.close()  # workers share one socket: new connections spread the load
            reply = await conn.get(pick_path(rng))
            out.statuses[reply.status] += 1
            out.latencies.append(reply.seconds)
            if done >= next_sample:
                sample()
                next_sample += 250
        conn.close()

    prober = Prober(port, limit_s + 60)
    await asyncio.gather(*(client() for _ in range(clients)))
    out.health, out.health_failures = prober.stop()
    sample()
    out.seconds = time.perf_counter() - t0
    return out


async def burst(port: int, count: int) -> Counter:
    conns = [Connection(port) for _ in range(count)]
    replies = await asyncio.gather(*(c.get("/figures/normal.png?w=600&h=450") for c in conns))
    for c in conns:
        c.close()
    return Counter(r.status for r in replies)


@dataclass
class Overload:
    statuses: Counter = field(default_factory=Counter)
    retry_after_missing: int = 0
    ok_latencies: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_failures: int = 0
    seconds: float = 0.0


# The /healthz prober runs in a process of its own, so its timings do not include the clients'
# event loop. One probe per 50 ms, like a load balancer's health check; one line per probe.
PROBER = """
import http.client, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
stop = time.monotonic() + seconds
while time.monotonic() < stop:
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 200
    except (OSError, http.client.HTTPException):
        conn.close()
        ok = False
    print(time.perf_counter() - t0 if ok else "failed", flush=True)
    time.sleep(0.05)
"""


class Prober:
    """Probes /healthz from its own process until ``stop()`` (or ``limit_s``)."""

    def __init__(self, port: int, limit_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBER, str(port), str(limit_s)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> tuple[list[float], int]:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        lines = out.split()
        return [float(x) for x in lines if x != "failed"], lines.count("failed")


async def overload(port: int, clients: int, seconds: float, max_requests: int) -> Overload:
    out = Overload()
    stop_at = time.monotonic() + seconds
    sent = 0
    rng = random.Random(2)

    async def client() -> None:
        nonlocal sent
        conn = Connection(port)
        while time.monotonic() < stop_at and sent < max_requests:
            sent += 1
            reply = await conn.get(pick_path(rng).split("?seed")[0])
            out.statuses[reply.status] += 1
            if reply.status == 503 and reply.retry_after is None:
                out.retry_after_missing += 1
            if reply.status == 200:
                out.ok_latencies.append(reply.seconds)
        conn.close()

    prober = Prober(port, seconds + 60)
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    out.seconds = time.perf_counter() - t0
    out.health, out.health_failures = prober.stop()
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def growth_per_1000(samples: list[dict], pid: int, warm_up: int) -> tuple[float, float, float]:
    after = [s for s in samples if s["renders"] >= warm_up]
    start, end = after[0], after[-1]
    renders = end["renders"] - start["renders"]
    delta = end["rss"][pid] - start["rss"][pid]
    return start["rss"][pid], end["rss"][pid], delta / renders * 1000 if renders else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8, help="soak clients (keep-alive)")
    parser.add_argument("--warm-up", type=int, default=1_000, help="renders before RSS counts")
    parser.add_argument("--overload-seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.md")
    args = parser.parse_args()

    settings = Settings.from_env()
    server = LiveServer().start()
    try:
        pids = worker_pids(server.proc.pid)
        capacity = len(pids) * settings.render_queue_limit
        print(f"server on {server.url}, workers {pids}, admission capacity {capacity}", flush=True)
        started = {p: rss_mb(p) for p in pids}

        s = asyncio.run(soak(server.port, pids, args.renders, args.clients, limit_s=480))
        print(f"soak: {sum(s.statuses.values())} requests in {s.seconds:.0f} s {dict(s.statuses)}")
        b = asyncio.run(burst(server.port, 200))
        print(f"burst of 200: {dict(b)}", flush=True)
        o = asyncio.run(
            overload(server.port, 10 * capacity, args.overload_seconds, max_requests=20_000)
        )
        print(f"overload: {dict(o.statuses)}, healthz p99 {pct(o.health, 0.99) * 1000:.1f} ms")
        after_overload = {p: rss_mb(p) for p in pids}
    finally:
        code = server.stop()
    print(f"server exit code {code}")

    five_xx = sum(n for st, n in s.statuses.items() if st >= 500 or st == 0)
    o_other = sum(n for st, n in o.statuses.items() if (st >= 500 and st != 503) or st == 0)
    lines = [
        "# Soak and overload",
        "",
        f"`bench/soak.py` against the shipped `hypercorn.toml` ({len(pids)} workers, "
        f"{settings.render_threads} render threads and an admission limit of "
        f"{settings.render_queue_limit} per worker) on 127.0.0.1; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Server exit code after "
        f"SIGTERM: {code}.",
        "",
        "## Soak",
        "",
        f"{sum(s.statuses.values()):,} requests ({args.clients} keep-alive clients) in "
        f"{s.seconds:.0f} s, {sum(s.statuses.values()) / s.seconds:.0f}/s; latency p50 "
        f"{pct(s.latencies, 0.5) * 1000:.0f} ms, p99 {pct(s.latencies, 0.99) * 1000:.0f} ms.",
        f"Statuses: {dict(sorted(s.statuses.items()))}. **5xx or dropped: {five_xx}** (goal 0).",
        f"`/healthz` meanwhile ({len(s.health)} probes, {s.health_failures} failed): p50 "
        f"{pct(s.health, 0.5) * 1000:.1f} ms, p99 {pct(s.health, 0.99) * 1000:.1f} ms.",
        "",
        f"| worker | RSS at start | after {args.warm_up:,} renders | at the end "
        "| growth per 1,000 renders after warm-up (goal < 5 MB) | after the overload |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in pids:
        warm, end, per_k = growth_per_1000(s.samples, p, args.warm_up)
        lines.append(
            f"| {pids.index(p) + 1} | {started[p]:.0f} MB | {warm:.0f} MB | {end:.0f} MB "
            f"| **{per_k:+.2f} MB** | {after_overload[p]:.0f} MB |"
        )
    lines += [
        "",
        "## Burst",
        "",
        f"200 render requests at once, one connection each: {dict(sorted(b.items()))} "
        "(503 = shed at the admission limit).",
        "",
        "## Overload",
        "",
        f"{10 * capacity} clients (10x the admission capacity of {capacity}) rendering for "
        f"{o.seconds:.0f} s: {sum(o.statuses.values()):,} requests, statuses "
        f"{dict(sorted(o.statuses.items()))}; **5xx other than 503 or dropped: {o_other}** "
        f"(goal 0); 503 without Retry-After: {o.retry_after_missing}.",
        f"Served renders: p50 {pct(o.ok_latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(o.ok_latencies, 0.99) * 1000:.0f} ms.",
        f"`/healthz` during the overload ({len(o.health)} probes, {o.health_failures} failed): "
        f"p50 {pct(o.health, 0.5) * 1000:.1f} ms, **p99 {pct(o.health, 0.99) * 1000:.1f} ms**, "
        f"max {max(o.health, default=float('nan')) * 1000:.1f} ms.",
        "",
        "The client runs on the same 2 cores as the server, so absolute times include its share.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    raw = RESULTS / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"soak-{int(time.time())}.json").write_text(
        json.dumps({"samples": s.samples, "soak": dict(s.statuses), "overload": dict(o.statuses)})
    )
    print(f"wrote {args.out}")
    return 0 if five_xx == 0 and o_other == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
