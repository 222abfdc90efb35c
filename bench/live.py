"""Live pages under many viewers: ``python -m bench --live``.

figserve as shipped (one worker), with the ``ticker`` figures of ``bench/livefig.py``. For each
number of viewers, on a fresh server, a client process (``bench/livecli.py``) opens that many
live streams, each following the two live figures of a page, and then:

1. measures the worker's memory before and after opening them (per idle stream), and its CPU
   while they are idle;
2. changes one figure's data at a time (the data file, then "changed now"): how many renders
   each change costs, when each viewer was told, and when each had fetched the new image;
3. lets the same viewers poll both figures every ``refresh`` seconds with URLs no cache answers,
   as dashboards that re-run their queries do: the baseline.

Goals (issue of live figures): renders per change = the figures changed (1), whatever the
viewers; at 1,000 viewers p99 told <= 250 ms and p99 fetched <= 2 s; <= 50 KB per idle stream.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import server
from .measure import Budget, machine, say
from .stats import percentile, write_json

GOALS = {"told_p99_ms": 250, "fetched_p99_s": 2.0, "kb_per_stream": 50}
JUDGED_AT = 1000


@dataclass(frozen=True)
class Plan:
    viewers: tuple[int, ...] = (100, 1000, 5000)
    changes: int = 8
    interval: float = 1.0
    idle: float = 5.0
    poll: float = 10.0
    refresh: float = 1.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(viewers=(100,), changes=4, idle=2.0, poll=4.0)


@dataclass
class LiveResult:
    plan: Plan
    machine: Any
    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    # The machine's load average (1 min) before and after: other work on it slows everything.
    load: list[float] = field(default_factory=list)


def _descriptors(viewers: int) -> None:
    """Each viewer holds two connections: raise this process's (and so the server's) limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * viewers + 200
    if hard < need:
        raise RuntimeError(f"{viewers} viewers need {need} file descriptors; the limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def one(viewers: int, plan: Plan, out: Path) -> dict[str, Any]:
    _descriptors(viewers)
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="figserve-bench-live-") as data:
        for i in range(8):
            (Path(data) / f"data-{i}.txt").write_text("0\n")
        env = {
            "FIGSERVE_FIGURES": "bench.livefig",
            "BENCH_LIVE_DIR": data,
            "FIGSERVE_ADMIN_TOKEN": token,
            "FIGSERVE_LIVE_MAX_STREAMS": str(viewers + 100),
            "FIGSERVE_LIVE_MAX_CLIENT_STREAMS": str(viewers + 100),
        }
        with server.figserve(f"live-{viewers}", out / "logs", env=env) as srv:
            worker = srv.workers()[0]
            cmd = [
                sys.executable, "-m", "bench.livecli", "--port", str(srv.port),
                "--server", str(srv.pid), "--worker", str(worker), "--token", token,
                "--viewers", str(viewers), "--changes", str(plan.changes),
                "--interval", str(plan.interval), "--idle", str(plan.idle),
                "--poll", str(plan.poll), "--refresh", str(plan.refresh),
            ]  # fmt: skip
            limit = 120 + plan.changes * (plan.interval + 15) + plan.idle + plan.poll + 60
            done = subprocess.run(
                cmd, cwd=server.ROOT, env={**_env(), "BENCH_LIVE_DIR": data},
                capture_output=True, text=True, timeout=limit, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                tail = done.stderr[-3000:]
                raise RuntimeError(f"the viewers failed ({done.returncode}):\n{tail}")
            record = json.loads(done.stdout)
            record["memory"] = srv.memory().pss_total_mb
    return summarize(viewers, record)


def _env() -> dict[str, str]:
    return dict(os.environ)


def summarize(viewers: int, record: dict[str, Any]) -> dict[str, Any]:
    live = record["live"]
    told = [t for c in live["changes"] for t in c["told"]]
    fetched = [t for c in live["changes"] for t in c["fetched"]]
    # Per change, when the last viewer was told and had its image (None: some never did).
    every_told = [max(c["told"]) if len(c["told"]) == viewers else None for c in live["changes"]]
    every_fetched = [
        max(c["fetched"]) if len(c["fetched"]) == viewers else None for c in live["changes"]
    ]
    out: dict[str, Any] = {
        "viewers": viewers,
        "open_s": live["open_s"],
        "kb_per_stream": live["memory_kb_per_stream"],
        "idle_cpu_cores": live["idle_cpu_cores"],
        "renders_per_change": live["renders_per_change"],
        "renders_ahead_per_change": live["renders_ahead_per_change"],
        "change_cpu_cores": live["change_cpu_cores"],
        "told_ms": {f"p{q}": percentile(told, q) * 1000 for q in (50, 99, 100)} if told else None,
        "fetched_s": {f"p{q}": percentile(fetched, q) for q in (50, 99, 100)} if fetched else None,
        "every_told_ms": [None if t is None else t * 1000 for t in every_told],
        "every_fetched_s": every_fetched,
        "missed": sum(c["missed"] for c in live["changes"]),
        "failed": sum(c["failed"] for c in live["changes"]),
    }
    poll = record.get("poll")
    if poll is not None:
        lat = poll["latencies"]
        out["poll"] = {
            "offered_per_s": poll["offered_per_s"],
            "polls": poll["polls"],
            "renders_per_s": poll["renders_per_s"],
            "cpu_cores": poll["cpu_cores"],
            "latency_s": {f"p{q}": percentile(lat, q) for q in (50, 99)} if lat else None,
        }
    return out


def run(out: Path, plan: Plan, budget: Budget) -> LiveResult:
    result = LiveResult(plan, machine(), load=[os.getloadavg()[0]])
    for viewers in plan.viewers:
        estimate = 60 + viewers / 50 + plan.changes * (plan.interval + 3) + plan.poll + plan.idle
        if not budget.fits(estimate):
            say(f"live: {viewers} viewers skipped: {budget.left():.0f} s left of the budget")
            result.skipped.append(viewers)
            continue
        say(f"live: {viewers} viewers")
        result.runs.append(one(viewers, plan, out))
    result.load.append(os.getloadavg()[0])
    return result


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def write(result: LiveResult, out: Path, command: str) -> None:
    write_json(result, out / "live.json")
    lines = [
        "# Live pages: many viewers, one worker",
        "",
        f"`{command}` on {result.machine.cores} cores (load average "
        f"{' then '.join(f'{x:.1f}' for x in result.load)}). Each viewer follows the two live "
        "figures of a page over one stream and fetches each new image over a keep-alive "
        'connection of its own; one figure changes at a time (its data file, then "changed now").',
        "",
        "*told*: from the data change until a viewer's stream delivered the new pin (the version "
        "check, the render ahead of the viewers and the fan-out to every stream); *fetched*: "
        "until the viewer had the new image (a cache hit, through the full request path for the "
        "first request of each new URL); *KB per idle stream*: the worker's memory with the "
        "streams open less before, per stream.",
        "",
        "| viewers | renders per change | told p50 / p99 / max | every viewer told (median "
        "of changes) | fetched p50 / p99 / max | KB per idle stream (USS, RSS) | idle CPU "
        "| missed |",
        "|---:|---:|---|---:|---|---|---:|---:|",
    ]
    for r in result.runs:
        told, fetched, kb = r["told_ms"] or {}, r["fetched_s"] or {}, r["kb_per_stream"]
        complete = sorted(t for t in r["every_told_ms"] if t is not None)
        every = complete[len(complete) // 2] if complete else None
        told_cells = " / ".join(_cell(told.get(q), ".0f") for q in ("p50", "p99", "p100"))
        fetched_cells = " / ".join(_cell(fetched.get(q), ".2f") for q in ("p50", "p99", "p100"))
        lines.append(
            f"| {r['viewers']:,} | {r['renders_per_change']:.2f} | {told_cells} ms "
            f"| {_cell(every, '.0f')} ms | {fetched_cells} s | {kb['uss']:.1f}, {kb['rss']:.1f} "
            f"| {r['idle_cpu_cores']:.3f} cores | {r['missed'] + r['failed']} |"
        )
    lines += [
        "",
        "Polling baseline: the same viewers ask for both figures every "
        f"{result.plan.refresh:g} s with URLs no cache answers (every poll is a render).",
        "",
        "| viewers | polls offered /s | answered / shed (503) | renders /s | server CPU "
        "| live: renders /s, CPU | renders asked for, polling / live | CPU, polling / live |",
        "|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in result.runs:
        p = r.get("poll")
        if p is None:
            continue
        live_rate = r["renders_per_change"] / (result.plan.interval + 0.2)
        ratio = p["cpu_cores"] / max(r["change_cpu_cores"], 1e-3)
        lines.append(
            f"| {r['viewers']:,} | {p['offered_per_s']:,.0f} | {p['polls']['ok']:,} / "
            f"{p['polls']['shed']:,} | {p['renders_per_s']:.1f} | {p['cpu_cores']:.2f} cores "
            f"| {live_rate:.1f}, {r['change_cpu_cores']:.2f} cores "
            f"| {p['offered_per_s'] / max(live_rate, 1e-3):,.0f} | {ratio:.1f} |"
        )
    lines += ["", _judgement(result), ""]
    if result.skipped:
        lines.append(f"Skipped for the time budget: {', '.join(map(str, result.skipped))}.")
    (out / "live.md").write_text("\n".join(lines) + "\n")


def _judgement(result: LiveResult) -> str:
    at = next((r for r in result.runs if r["viewers"] == JUDGED_AT), None)
    words = []
    exact = all(abs(r["renders_per_change"] - 1) < 1e-9 for r in result.runs)
    words.append(f"renders per change exactly 1 at every size: {'met' if exact else 'not met'}")
    if at is None:
        words.append(f"the latency goals are judged at {JUDGED_AT:,} viewers (not run)")
    else:
        told = (at["told_ms"] or {}).get("p99", float("inf"))
        fetched = (at["fetched_s"] or {}).get("p99", float("inf"))
        words.append(f"told p99 {told:.0f} ms (goal {GOALS['told_p99_ms']}): "
                     f"{'met' if told <= GOALS['told_p99_ms'] else 'not met'}")  # fmt: skip
        words.append(f"fetched p99 {fetched:.2f} s (goal {GOALS['fetched_p99_s']:g}): "
                     f"{'met' if fetched <= GOALS['fetched_p99_s'] else 'not met'}")  # fmt: skip
    kb = max((r["kb_per_stream"]["uss"] for r in result.runs), default=float("nan"))
    words.append(f"memory per idle stream at most {kb:.1f} KB (goal {GOALS['kb_per_stream']}): "
                 f"{'met' if kb <= GOALS['kb_per_stream'] else 'not met'}")  # fmt: skip
    return "Goals: " + "; ".join(words) + "."
