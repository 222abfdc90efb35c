"""The default run: figserve as shipped, the Flask reference on two servers, the raw limit.

The machine may be shared, so nothing is reported as an absolute alone. Every figure that
depends on a server start is measured over several fresh starts (min and median, never one
lucky start); throughput runs are bracketed by raw-limit runs; "one render" is the CPU per render
of this run's raw-limit runs; CPU costs are measured interleaved in one process.

Each round starts, measures and stops in turn: figserve as shipped, figserve with one worker (for
cached requests per worker), then the Flask reference on Flask's dev server and on Gunicorn, so
that noise on the machine hits them alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import browser, measure, raw, server
from .browser import ChromiumRun
from .load import WrkResult, wrk
from .measure import (
    FIG,
    Budget,
    ImageCheck,
    Machine,
    Overload,
    ProbeRun,
    ThroughputRun,
    UnderLoad,
    say,
)
from .procs import CORES, MemorySnapshot
from .raw import CpuCost, RawLimit, RawRun
from .server import Layout, StopReport
from .stats import Spread

FLASK_FIG = "/fig/5_3?dpi=100"  # the Flask reference at figserve's 400x300 pixels


@dataclass(frozen=True)
class Plan:
    starts: int = 3  # fresh starts of figserve (and of its one-worker twin)
    reference_starts: int = 2  # fresh starts of each Flask server
    seconds: float = 5.0  # each wrk load
    raw_seconds: float = 4.0  # each raw-limit run
    probe_loads: int = 8  # per start
    chromium_loads: int = 8  # per start
    overload_seconds: float = 5.0
    cpu_rounds: int = 30

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            starts=2,
            reference_starts=1,
            seconds=2.0,
            raw_seconds=2.0,
            probe_loads=8,
            chromium_loads=3,
            overload_seconds=3.0,
            cpu_rounds=10,
        )


@dataclass
class FigserveStart:
    index: int
    workers: int
    probe: ProbeRun
    chromium: ChromiumRun | None
    throughput: list[ThroughputRun]
    raws: list[RawRun]
    page_idle: WrkResult
    page: UnderLoad
    overload: Overload
    images: ImageCheck
    memory_warm: MemorySnapshot
    memory_end: MemorySnapshot
    stop: StopReport | None = None
    seconds: float = 0.0


@dataclass
class CachedStart:
    index: int
    wrk: WrkResult
    stop: StopReport | None = None


@dataclass
class ReferenceStart:
    server: str
    index: int
    throughput: list[ThroughputRun]
    raws: list[RawRun]
    page: UnderLoad
    images: ImageCheck
    stop: StopReport | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Goal:
    name: str
    measured: Spread  # over fresh starts (n = 1: a value that needs no server)
    judged_by: str  # the statistic held against the target: median, min or value
    target: float
    higher_is_better: bool
    value: float
    met: bool | None  # None: not measured in this run
    digits: int = 2
    unit: str = ""

    @classmethod
    def judge(
        cls,
        name: str,
        measured: Spread,
        judged_by: str,
        target: float,
        higher_is_better: bool,
        digits: int = 2,
        unit: str = "",
    ) -> Goal:
        value = measured.min if judged_by == "min" else measured.median
        met = None
        if measured.n:
            met = value >= target if higher_is_better else value <= target
        return cls(name, measured, judged_by, target, higher_is_better, value, met, digits, unit)


@dataclass
class Summary:
    one_render_ms: float  # CPU of one 400x300 render, from this run's raw-limit runs
    ideal_page_ms: float  # 12 x one render / cores
    probe_ratio: Spread  # per start: the median load / ideal
    probe_ratio_worst: float  # the slowest load of any start / ideal
    probe_workers: list[int | None]  # workers that answered, per load of every start
    chromium_ratio: Spread
    throughput: dict[str, dict[int, Spread]]  # server -> clients -> ratio over starts
    page_p99_ms: dict[str, Spread]
    health_p99_ms: Spread
    cached_rps_per_worker: Spread
    # Whole server (PSS, else RSS) per 1,000 renders: a first look, no goal (--soak has one).
    memory_growth_mb_per_1000: Spread
    goals: list[Goal]


@dataclass
class MainResult:
    machine: Machine
    quick: bool
    plan: Plan
    layout: Layout
    hypercorn: dict[str, Any]
    settings: dict[str, Any]
    cpu: list[CpuCost] = field(default_factory=list)
    figserve: list[FigserveStart] = field(default_factory=list)
    cached: list[CachedStart] = field(default_factory=list)
    flask_dev: list[ReferenceStart] = field(default_factory=list)
    gunicorn: list[ReferenceStart] = field(default_factory=list)
    raw_pyplot: RawRun | None = None
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    summary: Summary | None = None


# --- one start of each kind --------------------------------------------------------------------


def _figserve_start(
    i: int, log_dir: Path, plan: Plan, limit: RawLimit, layout: Layout
) -> FigserveStart:
    t0 = time.monotonic()
    srv = server.figserve(f"figserve-{i}", log_dir)
    with srv:
        renders = wrk(srv.url + FIG, 12, 2).ok  # warm-up
        warm = srv.memory(renders)
        say(f"figserve start {i}: page probe ({plan.probe_loads} loads)")
        probe = measure.page_probe(srv, loads=plan.probe_loads)
        renders += sum(load.ok for load in probe.loads) + browser.IMAGES  # + the warm load
        chromium = None
        if plan.chromium_loads:
            say(f"figserve start {i}: 12-image page in Chromium")
            chromium = browser.measure(srv.url, loads=plan.chromium_loads)
            renders += browser.IMAGES * (plan.chromium_loads + 2)
        say(f"figserve start {i}: /fig/5_3 at 6 and 12 clients between raw-limit runs")
        throughput, raws = measure.bracketed_throughput(srv, limit, plan.seconds, plan.raw_seconds)
        renders += sum(t.wrk.ok for t in throughput)
        say(f"figserve start {i}: page latency idle and under load; /healthz at 10x overload")
        idle = measure.page_idle(srv, min(3.0, plan.seconds))
        page = measure.page_under_load(srv, plan.seconds)
        overload = measure.health_overload(srv, layout, plan.overload_seconds)
        images = measure.validate_images(srv)
        renders += page.load.ok + overload.health.load.ok + images.checked
        end = srv.memory(renders)
        workers = len(srv.workers())
    return FigserveStart(
        index=i,
        workers=workers,
        probe=probe,
        chromium=chromium,
        throughput=throughput,
        raws=raws,
        page_idle=idle,
        page=page,
        overload=overload,
        images=images,
        memory_warm=warm,
        memory_end=end,
        stop=srv.stopped,
        seconds=time.monotonic() - t0,
    )


def _cached_start(i: int, log_dir: Path, plan: Plan) -> CachedStart:
    srv = server.figserve(f"figserve-1-worker-{i}", log_dir, workers=1)
    with srv:
        result = measure.cached(srv, plan.seconds)
    return CachedStart(i, result, srv.stopped)


def _reference_start(
    name: str, i: int, log_dir: Path, plan: Plan, limit: RawLimit
) -> ReferenceStart:
    t0 = time.monotonic()
    start = server.flask_dev if name == "flask_dev" else server.gunicorn
    srv = start(f"{name}-{i}", log_dir)
    with srv:
        wrk(srv.url + FLASK_FIG, 12, 2)  # warm-up
        throughput, raws = measure.bracketed_throughput(
            srv, limit, plan.seconds, plan.raw_seconds, path=FLASK_FIG
        )
        page = measure.page_under_load(srv, plan.seconds, fig_path=FLASK_FIG)
        images = measure.validate_images(srv, FLASK_FIG)
    return ReferenceStart(
        name, i, throughput, raws, page, images, srv.stopped, time.monotonic() - t0
    )


# --- the run -----------------------------------------------------------------------------------

# Seconds each kind of start is expected to take before one has been timed.
_FIRST_ESTIMATE = {"figserve": 70.0, "cached": 20.0, "flask_dev": 40.0, "gunicorn": 40.0}


def run(out: Path, plan: Plan, budget: Budget, quick: bool = False) -> MainResult:
    t0 = time.monotonic()
    log_dir = out / "raw"
    layout = Layout.shipped()
    result = MainResult(
        machine=measure.machine(),
        quick=quick,
        plan=plan,
        layout=layout,
        hypercorn={k: v for k, v in server.shipped_hypercorn().items() if k != "bind"},
        settings=_settings(),
    )
    say("CPU per image: figserve and the pyplot reference, interleaved in one process")
    result.cpu = raw.cpu_per_image(rounds=plan.cpu_rounds)
    took: dict[str, float] = {}

    def fits(kind: str, label: str) -> bool:
        if budget.fits(took.get(kind, _FIRST_ESTIMATE[kind])):
            return True
        result.skipped.append(f"{label}: not started, {budget.left():.0f} s of the budget left")
        say(result.skipped[-1])
        return False

    with RawLimit() as limit:
        say("raw limit: warming up one process per core")
        limit.measure(1.0)
        for i in range(plan.starts):
            if fits("figserve", f"figserve start {i}"):
                s = time.monotonic()
                result.figserve.append(_figserve_start(i, log_dir, plan, limit, layout))
                took["figserve"] = time.monotonic() - s
            if fits("cached", f"one-worker start {i}"):
                s = time.monotonic()
                say(f"figserve with one worker, start {i}: cached requests per second")
                result.cached.append(_cached_start(i, log_dir, plan))
                took["cached"] = time.monotonic() - s
            if i >= plan.reference_starts:
                continue
            for name in ("flask_dev", "gunicorn"):
                if fits(name, f"{name} start {i}"):
                    s = time.monotonic()
                    say(f"Flask reference on {name}, start {i}")
                    ref = _reference_start(name, i, log_dir, plan, limit)
                    getattr(result, name).append(ref)
                    took[name] = time.monotonic() - s
        say("raw limit of the pyplot reference (what the Flask servers could reach)")
        result.raw_pyplot = limit.measure(plan.raw_seconds, kind="pyplot")
        result.seconds = time.monotonic() - t0
        result.summary = summarise(result, limit.one_render_ms())
    say(f"measurements done in {result.seconds:.0f} s")
    return result


def _settings() -> dict[str, Any]:
    from figserve.config import Settings

    s = Settings.from_env().model_dump()
    keep = (
        "render_processes",
        "render_threads",
        "render_queue_limit",
        "png_compress_level",
        "cache_bytes",
    )
    return {k: s[k] for k in keep if k in s}


# --- summary and goals -------------------------------------------------------------------------


def _growth_per_1000(start: FigserveStart) -> float:
    warm, end = start.memory_warm, start.memory_end
    renders = end.renders - warm.renders
    if renders <= 0:
        return float("nan")
    a = warm.pss_total_mb if warm.pss_total_mb is not None else warm.rss_total_mb
    b = end.pss_total_mb if end.pss_total_mb is not None else end.rss_total_mb
    return (b - a) / renders * 1000


def _throughput(starts: list[Any]) -> dict[int, Spread]:
    by_clients: dict[int, list[float]] = {}
    for s in starts:
        for t in s.throughput:
            by_clients.setdefault(t.clients, []).append(t.ratio)
    return {c: Spread.of(v) for c, v in sorted(by_clients.items())}


def summarise(r: MainResult, one_render_ms: float) -> Summary:
    ideal = browser.IMAGES * one_render_ms / CORES
    fs = r.figserve
    probe_ratio = Spread.of([s.probe.median_ms / ideal for s in fs])
    worst = max((s.probe.max_ms for s in fs), default=float("nan")) / ideal
    chromium = Spread.of([s.chromium.median_ms / ideal for s in fs if s.chromium])
    throughput = {
        "figserve": _throughput(fs),
        "flask_dev": _throughput(r.flask_dev),
        "gunicorn": _throughput(r.gunicorn),
    }
    page = {
        "figserve": Spread.of([s.page.probe.p99_ms for s in fs]),
        "flask_dev": Spread.of([s.page.probe.p99_ms for s in r.flask_dev]),
        "gunicorn": Spread.of([s.page.probe.p99_ms for s in r.gunicorn]),
    }
    health = Spread.of([s.overload.health.probe.p99_ms for s in fs])
    cached = Spread.of([c.wrk.ok_rps for c in r.cached])
    growth = Spread.of([_growth_per_1000(s) for s in fs])
    cpu3 = next((c for c in r.cpu if c.dpr == 3), None)
    cpu_ratio = Spread.of([cpu3.figserve_ms / cpu3.pyplot_ms] if cpu3 else [])
    g = Goal.judge
    goals = [
        g("12 images over 6 connections (probe) / ideal", probe_ratio, "median", 1.15, False),
        g("12-image page in Chromium / ideal", chromium, "median", 1.15, False),
    ]
    for c, spread in throughput["figserve"].items():
        name = f"/fig/5_3 at {c} clients / raw limit"
        goals += [g(name, spread, "min", 0.9, True), g(name, spread, "median", 0.95, True)]
    goals += [
        g("/normal/5_3 p99 under image load", page["figserve"], "median", 25, False, 1, " ms"),
        g("/healthz p99 at 10x overload", health, "median", 50, False, 1, " ms"),
        g("cached requests/s per worker", cached, "median", 3000, True, 0),
        g("CPU per 1200x900 PNG / pyplot", cpu_ratio, "value", 0.6, False),
    ]
    return Summary(
        one_render_ms=one_render_ms,
        ideal_page_ms=ideal,
        probe_ratio=probe_ratio,
        probe_ratio_worst=worst,
        probe_workers=[load.workers for s in fs for load in s.probe.loads],
        chromium_ratio=chromium,
        throughput=throughput,
        page_p99_ms=page,
        health_p99_ms=health,
        cached_rps_per_worker=cached,
        memory_growth_mb_per_1000=growth,
        goals=goals,
    )
