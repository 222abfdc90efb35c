"""Soak and overload: ``python -m bench --soak``.

1. Soak: 10,000 requests of a mix of figures and formats (mostly unseeded, so each one really
   renders) from a few keep-alive clients, in chunks of a fixed duration with ``/healthz`` probed
   meanwhile; after each chunk the memory of every process of the server (master, workers, their
   children) is read. Reports the growth per 1,000 renders after warm-up, per kind of process and
   in all (goal: < 5 MB), and every response that was not 2xx (goal: none).
2. Burst: that many image requests at the same moment, each on its own connection: how many are
   shed (503 with Retry-After) and how many fail otherwise.
3. Overload: 10x the server's render capacity in concurrent image clients for a fixed time, with
   ``/healthz`` probed meanwhile (goal: p99 <= 50 ms; shedding with 503 and Retry-After).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import client, measure, server
from .load import WrkResult, together, wrk
from .measure import HEALTH_PROBE_DELAY_MS, Budget, Machine, Overload, say
from .procs import MemorySnapshot
from .server import Layout, StopReport
from .stats import write_json

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
BURST_PATH = "/figures/normal.png?w=600&h=450"


def mix_paths(count: int = 2000, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    paths, weights = zip(*MIX, strict=True)
    return [p.format(seed=rng.randrange(300)) for p in rng.choices(paths, weights, k=count)]


@dataclass(frozen=True)
class Plan:
    renders: int = 10_000
    warm_up: int = 1_000  # renders before memory counts
    connections: int = 8
    chunk_seconds: float = 10.0
    burst: int = 200
    overload_seconds: float = 20.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(renders=600, warm_up=150, chunk_seconds=3.0, burst=50, overload_seconds=3.0)


@dataclass(frozen=True)
class Chunk:
    load: WrkResult  # statuses counted
    health: WrkResult  # /healthz meanwhile, paced


@dataclass(frozen=True)
class Burst:
    requests: int
    seconds: float
    statuses: dict[str, int]
    no_retry_after: int  # 503s without Retry-After


@dataclass(frozen=True)
class KindGrowth:
    kind: str
    count_warm: int
    count_end: int
    rss_warm_mb: float
    rss_end_mb: float
    pss_warm_mb: float | None
    pss_end_mb: float | None
    growth_mb_per_1000: float  # of PSS if readable, else of RSS


@dataclass
class SoakResult:
    machine: Machine
    plan: Plan
    layout: Layout
    samples: list[MemorySnapshot] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    burst: Burst | None = None
    overload: Overload | None = None
    after_overload: MemorySnapshot | None = None
    stop: StopReport | None = None
    seconds: float = 0.0
    growth: list[KindGrowth] = field(default_factory=list)
    total_growth_mb_per_1000: float = float("nan")


def _burst(srv: server.Server, count: int) -> Burst:
    t0 = time.perf_counter()
    _, fetches = client.fetch_together(srv.port, [BURST_PATH] * count, count)
    statuses = Counter(str(f.status) for f in fetches)
    missing = sum(1 for f in fetches if f.status == 503 and f.retry_after is None)
    return Burst(count, time.perf_counter() - t0, dict(statuses), missing)


def run(out: Path, plan: Plan, budget: Budget) -> SoakResult:
    t0 = time.monotonic()
    layout = Layout.shipped()
    result = SoakResult(measure.machine(), plan, layout)
    paths = mix_paths()
    reserve = plan.overload_seconds + 40  # burst, overload and stop after the soak
    srv = server.figserve("soak", out / "raw")
    with srv:
        say(f"soak: up to {plan.renders:,} requests on {srv.url}")
        done = 0
        result.samples.append(srv.memory(done))
        while done < plan.renders and budget.left() > reserve + plan.chunk_seconds:
            load, health = together(
                (0.0, lambda: wrk(
                    srv.url, plan.connections, plan.chunk_seconds, paths=paths, count_status=True
                )),
                (0.5, lambda: wrk(
                    srv.url + "/healthz", 1, plan.chunk_seconds - 1, threads=1,
                    delay_ms=HEALTH_PROBE_DELAY_MS,
                )),
            )  # fmt: skip
            result.chunks.append(Chunk(load, health))
            done += load.requests
            result.samples.append(srv.memory(done))
            say(f"soak: {done:,} requests, {result.samples[-1].rss_total_mb:,.0f} MB RSS in all")
        say(f"burst: {plan.burst} requests at once")
        result.burst = _burst(srv, plan.burst)
        say(f"overload: 10x the render capacity of {layout.capacity}")
        result.overload = measure.health_overload(srv, layout, plan.overload_seconds)
        result.after_overload = srv.memory(done)
    result.stop = srv.stopped
    result.seconds = time.monotonic() - t0
    _growth(result)
    return result


def _growth(r: SoakResult) -> None:
    after = [s for s in r.samples if s.renders >= r.plan.warm_up]
    if len(after) < 2:
        return
    warm, end = after[0], after[-1]
    per_k = 1000 / (end.renders - warm.renders)
    before = {k.kind: k for k in warm.by_kind()}
    for k in end.by_kind():
        w = before.get(k.kind)
        a = (w.pss_mb if w.pss_mb is not None else w.rss_mb) if w else 0.0
        b = k.pss_mb if k.pss_mb is not None else k.rss_mb
        r.growth.append(
            KindGrowth(
                kind=k.kind,
                count_warm=w.count if w else 0,
                count_end=k.count,
                rss_warm_mb=w.rss_mb if w else 0.0,
                rss_end_mb=k.rss_mb,
                pss_warm_mb=w.pss_mb if w else None,
                pss_end_mb=k.pss_mb,
                growth_mb_per_1000=(b - a) * per_k,
            )
        )
    a = warm.pss_total_mb if warm.pss_total_mb is not None else warm.rss_total_mb
    b = end.pss_total_mb if end.pss_total_mb is not None else end.rss_total_mb
    r.total_growth_mb_per_1000 = (b - a) * per_k


def write(r: SoakResult, out: Path, command: str) -> None:
    write_json(r, out / "soak.json")
    loads = [c.load for c in r.chunks]
    requests = sum(w.requests for w in loads)
    statuses: Counter[str] = Counter()
    for w in loads:
        statuses.update(w.statuses or {})
    bad = sum(w.errors for w in loads)
    health = [c.health for c in r.chunks]

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:,.0f}"

    lines = [
        "# Soak and overload",
        "",
        r.machine.describe(command, r.seconds),
        "",
        f"figserve as shipped (layout {r.layout}: workers x render processes x render threads) "
        f"on 127.0.0.1; stopped in {r.stop.seconds if r.stop else float('nan'):.1f} s, exit "
        f"code {r.stop.exit_code if r.stop else '?'}, "
        f"{r.stop.leftovers if r.stop else '?'} processes left behind.",
        "",
        "## Soak",
        "",
        f"{requests:,} requests of a mix of {len(MIX)} figure URLs ({r.plan.connections} "
        f"keep-alive clients, {len(loads)} chunks of {r.plan.chunk_seconds:g} s); statuses "
        f"{dict(sorted(statuses.items()))}; **not 2xx or failed: {bad}** (goal 0). "
        f"p99 per chunk: {', '.join(f'{w.p99_ms:.0f}' for w in loads)} ms.",
        f"`/healthz` meanwhile, p99 per chunk: {', '.join(f'{w.p99_ms:.1f}' for w in health)} ms.",
        "",
        f"Memory after {r.plan.warm_up:,} requests (warm-up) and at the end; growth per 1,000 "
        "requests of the PSS of each kind of process (RSS where PSS is not readable):",
        "",
        "| process kind | count | RSS MB sum | PSS MB sum | growth per 1,000 |",
        "|---|---|---|---|---:|",
    ]
    for g in r.growth:
        lines.append(
            f"| {g.kind} | {g.count_warm} → {g.count_end} | {ms(g.rss_warm_mb)} → "
            f"{ms(g.rss_end_mb)} | {ms(g.pss_warm_mb)} → {ms(g.pss_end_mb)} "
            f"| {g.growth_mb_per_1000:+.2f} MB |"
        )
    lines += [
        f"| **all** | | | | **{r.total_growth_mb_per_1000:+.2f} MB** (goal < 5) |",
        "",
    ]
    if r.burst:
        b = r.burst
        lines += [
            "## Burst",
            "",
            f"{b.requests} image requests at the same moment, one connection each: statuses "
            f"{dict(sorted(b.statuses.items()))} in {b.seconds:.1f} s (0: no response); 503 "
            f"without Retry-After: {b.no_retry_after}.",
            "",
        ]
    if r.overload:
        o = r.overload
        load, hp = o.health.load, o.health.probe
        lines += [
            "## Overload",
            "",
            f"{o.clients} clients (10x the render capacity of {o.capacity}) asking for images "
            f"for {load.seconds:.0f} s: {load.requests:,} responses, statuses "
            f"{dict(sorted((load.statuses or {}).items()))}, socket errors "
            f"{load.socket_errors}, timeouts {load.timeouts}; 503 without Retry-After: "
            f"{load.no_retry_after}.",
            f"`/healthz` meanwhile ({hp.requests} probes, one every {HEALTH_PROBE_DELAY_MS} ms): "
            f"p50 {hp.p50_ms:.1f} ms, **p99 {hp.p99_ms:.1f} ms** (goal ≤ 50), max "
            f"{hp.max_ms:.1f} ms.",
            "",
        ]
    if r.after_overload:
        lines.append(
            f"Memory after the overload: {r.after_overload.rss_total_mb:,.0f} MB RSS, "
            f"{ms(r.after_overload.pss_total_mb)} MB PSS in "
            f"{len(r.after_overload.processes)} processes."
        )
    lines.append("")
    lines.append("The client runs on the same cores as the server, so latencies include its share.")
    (out / "soak.md").write_text("\n".join(lines) + "\n")
