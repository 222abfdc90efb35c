"""figserve configurations side by side, alternated over fresh starts so that noise on the
machine hits them alike: ``--layouts`` (workers x render processes x render threads, to choose
the shipped default) and ``--levers`` (settings the shipped app does not use, each against it).

Every start measures the browser-like page probe, ``/fig/5_3`` at 6 and 12 clients between
raw-limit runs, page p99 under image load, cached requests and the memory of every process.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import browser, measure, server
from .load import WrkResult, wrk
from .measure import FIG, Budget, Machine, ProbeRun, ThroughputRun, UnderLoad, say
from .procs import CORES, MemorySnapshot
from .raw import RawLimit, RawRun
from .server import Layout, StopReport
from .stats import Spread, write_json


@dataclass(frozen=True)
class Variant:
    name: str
    layout: Layout  # what it runs (for the overload capacity and the report)
    workers: int | None = None  # --workers, when not hypercorn.toml's
    env: dict[str, str] = field(default_factory=dict)
    toml: dict[str, Any] = field(default_factory=dict)


def from_layouts(layouts: list[Layout]) -> list[Variant]:
    return [Variant(str(lay), lay, workers=lay.workers, env=lay.env()) for lay in layouts]


def levers() -> list[Variant]:
    """The shipped configuration and each lever it does not apply, one at a time."""
    shipped = Layout.shipped()
    return [
        Variant("shipped", shipped),
        Variant("access log off", shipped, toml={"accesslog": None}),
        Variant("one request per connection", shipped, toml={"keep_alive_max_requests": 1}),
        Variant("PNG level 6", shipped, env={"FIGSERVE_PNG_COMPRESS_LEVEL": "6"}),
        Variant("render queue limit 16", shipped, env={"FIGSERVE_RENDER_QUEUE_LIMIT": "16"}),
        Variant("render queue limit 64", shipped, env={"FIGSERVE_RENDER_QUEUE_LIMIT": "64"}),
    ]


@dataclass(frozen=True)
class Plan:
    rounds: int = 3
    seconds: float = 3.0  # each wrk load
    raw_seconds: float = 3.0
    probe_loads: int = 8

    @classmethod
    def quick(cls) -> Plan:
        return cls(rounds=2, seconds=1.0, raw_seconds=1.0, probe_loads=3)


@dataclass
class VariantStart:
    variant: str
    round: int
    workers: int = 0
    probe: ProbeRun | None = None
    throughput: list[ThroughputRun] = field(default_factory=list)
    raws: list[RawRun] = field(default_factory=list)
    page: UnderLoad | None = None
    cached: WrkResult | None = None
    memory: MemorySnapshot | None = None
    stop: StopReport | None = None
    seconds: float = 0.0
    error: str | None = None  # a configuration that does not start is a result too


@dataclass(frozen=True)
class VariantSummary:
    variant: str
    layout: str
    starts: int
    probe_ratio: Spread  # per start: median load / ideal
    probe_worst: float
    workers_per_load: list[int | None]
    throughput: dict[int, Spread]
    page_p99_ms: Spread
    cached_rps: Spread
    pss_total_mb: Spread
    processes: Spread
    errors: int
    failed_starts: int


@dataclass
class VariantsResult:
    suite: str
    machine: Machine
    plan: Plan
    variants: list[Variant]
    starts: list[VariantStart] = field(default_factory=list)
    one_render_ms: float = 0.0
    ideal_page_ms: float = 0.0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    summary: list[VariantSummary] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _start(v: Variant, rnd: int, log_dir: Path, plan: Plan, limit: RawLimit) -> VariantStart:
    t0 = time.monotonic()
    rec = VariantStart(v.name, rnd)
    srv = server.figserve(
        f"{_slug(v.name)}-{rnd}", log_dir, workers=v.workers, env=v.env, toml=v.toml
    )
    try:
        with srv:
            renders = wrk(srv.url + FIG, 12, 2).ok  # warm-up
            rec.probe = measure.page_probe(srv, loads=plan.probe_loads)
            renders += sum(load.ok for load in rec.probe.loads) + browser.IMAGES
            rec.throughput, rec.raws = measure.bracketed_throughput(
                srv, limit, plan.seconds, plan.raw_seconds
            )
            rec.page = measure.page_under_load(srv, plan.seconds)
            rec.cached = measure.cached(srv, plan.seconds)
            renders += sum(t.wrk.ok for t in rec.throughput) + rec.page.load.ok
            rec.memory = srv.memory(renders)
            rec.workers = len(srv.workers())
    except (RuntimeError, TimeoutError) as exc:
        rec.error = str(exc).splitlines()[0]
    rec.stop = srv.stopped
    rec.seconds = time.monotonic() - t0
    return rec


def run(
    suite: str, variants: list[Variant], out: Path, plan: Plan, budget: Budget
) -> VariantsResult:
    t0 = time.monotonic()
    result = VariantsResult(suite, measure.machine(), plan, variants)
    log_dir = out / "raw"
    took = 45.0  # a first guess at one start, until one has been timed
    with RawLimit() as limit:
        say("raw limit: warming up one process per core")
        limit.measure(1.0)
        for rnd in range(plan.rounds):
            for v in variants:
                if not budget.fits(took):
                    result.skipped.append(f"{v.name}, round {rnd}")
                    continue
                say(f"{suite}: {v.name}, round {rnd + 1} of {plan.rounds}")
                rec = _start(v, rnd, log_dir, plan, limit)
                took = took if rec.error else rec.seconds
                result.starts.append(rec)
        result.one_render_ms = limit.one_render_ms() if limit.runs else float("nan")
    result.ideal_page_ms = browser.IMAGES * result.one_render_ms / CORES
    result.seconds = time.monotonic() - t0
    result.summary = [_summarise(v, result) for v in variants]
    if result.skipped:
        say(f"not run (time budget): {'; '.join(result.skipped)}")
    return result


def _summarise(v: Variant, r: VariantsResult) -> VariantSummary:
    starts = [s for s in r.starts if s.variant == v.name and s.error is None]
    ideal = r.ideal_page_ms
    by_clients: dict[int, list[float]] = {}
    for s in starts:
        for t in s.throughput:
            by_clients.setdefault(t.clients, []).append(t.ratio)
    errors = sum(
        w.errors
        for s in starts
        for w in [*(t.wrk for t in s.throughput), *([s.page.load] if s.page else [])]
    )
    return VariantSummary(
        variant=v.name,
        layout=str(v.layout),
        starts=len(starts),
        probe_ratio=Spread.of([s.probe.median_ms / ideal for s in starts if s.probe]),
        probe_worst=max((s.probe.max_ms / ideal for s in starts if s.probe), default=float("nan")),
        workers_per_load=[load.workers for s in starts if s.probe for load in s.probe.loads],
        throughput={c: Spread.of(v) for c, v in sorted(by_clients.items())},
        page_p99_ms=Spread.of([s.page.probe.p99_ms for s in starts if s.page]),
        cached_rps=Spread.of([s.cached.ok_rps for s in starts if s.cached]),
        pss_total_mb=Spread.of(
            [s.memory.pss_total_mb or s.memory.rss_total_mb for s in starts if s.memory]
        ),
        processes=Spread.of([len(s.memory.processes) for s in starts if s.memory]),
        errors=errors,
        failed_starts=sum(1 for s in r.starts if s.variant == v.name and s.error),
    )


TITLES = {
    "layouts": "Layouts: workers x render processes x render threads",
    "levers": "Levers the shipped configuration does not apply",
}


def write(r: VariantsResult, out: Path, command: str) -> None:
    write_json(r, out / f"{r.suite}.json")

    def tp(s: VariantSummary, c: int) -> str:
        sp = s.throughput.get(c)
        return "n/a" if sp is None or sp.n == 0 else f"{sp.min:.2f} / {sp.median:.2f}"

    both = r.suite != "layouts"  # a layout's name is its layout
    lines = [
        f"# {TITLES[r.suite]}, alternated over fresh starts",
        "",
        r.machine.describe(command, r.seconds),
        "",
        f"Each cell: median (min-max) over the starts of that configuration; throughput as "
        f"min / median. Ideal page = 12 x {r.one_render_ms:.1f} ms (one render's CPU in this "
        f"run's raw-limit runs) / {r.machine.cores} cores = {r.ideal_page_ms:.0f} ms. Goals: "
        "probe ≤ 1.15, throughput min ≥ 0.9 and median ≥ 0.95. Memory: PSS of every process of "
        "the server after its measurements.",
        "",
        f"| configuration{' | layout' * both} | starts | probe: median load / ideal "
        "| slowest load "
        "| 6 clients / raw | 12 clients / raw | page p99 ms under load | cached req/s "
        "| memory MB (processes) | errors |",
        "|---" * (1 + both) + "|---:" * 9 + "|",
    ]
    for s in r.summary:
        failed = f" ({s.failed_starts} failed to start)" if s.failed_starts else ""
        lines.append(
            f"| {s.variant}{f' | {s.layout}' * both} | {s.starts}{failed} | {s.probe_ratio.fmt()} "
            f"| {s.probe_worst:.2f} | {tp(s, 6)} | {tp(s, 12)} | {s.page_p99_ms.fmt(1)} "
            f"| {s.cached_rps.fmt(0)} | {s.pss_total_mb.fmt(0)} ({s.processes.median:.0f}) "
            f"| {s.errors} |"
        )
    lines += ["", "Workers that answered each probe load:", ""]
    for s in r.summary:
        ws = ", ".join("?" if w is None else str(w) for w in s.workers_per_load) or "-"
        lines.append(f"- {s.variant}: {ws}")
    failures = [f"- {s.variant}, round {s.round}: {s.error}" for s in r.starts if s.error]
    if failures:
        lines += ["", "Starts that failed:", "", *failures]
    if r.skipped:
        lines += ["", "Not run (time budget): " + "; ".join(r.skipped) + "."]
    (out / f"{r.suite}.md").write_text("\n".join(lines) + "\n")
