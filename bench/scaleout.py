"""Scale-out mode: ``python -m bench --scaleout``.

Everything on 127.0.0.1: a Redis, figserve instances as shipped (``hypercorn.toml``) with
``FIGSERVE_REDIS_URL``, and the shipped ``deploy/nginx.conf`` in front (the test suite's
launchers). Two figures, each over several fresh starts (min and median, never one start):

1. throughput of unseeded ``/fig/5_3`` (drawn every time, never cached) through nginx, two
   instances against one, alternated start by start so that noise on the machine hits both;
   the ratio is 2 instances / 1 instance. On one machine both layouts share the same cores, so
   the ratio shows what the layout costs (near 1.0 is good); on two machines it is the gain;
2. cross-instance cache hits: a seeded image drawn on instance A, then asked of instance B,
   which must answer it from Redis without drawing (the share of such hits, and the latency of
   a hit against a render).

Every load has a fixed duration, every process is stopped at the end of its start.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import server
from .load import WrkResult, wrk
from .measure import Budget, Machine, machine, say
from .stats import Spread, write_json

PATH = "/fig/5_3"
START_ESTIMATE = 40.0  # seconds one round of both layouts takes, loads included


@dataclass(frozen=True)
class Plan:
    starts: int = 3
    seconds: float = 5.0
    connections: int = 12
    seeds: int = 20  # seeded images drawn on A then asked of B, per start

    @classmethod
    def quick(cls) -> Plan:
        return cls(starts=1, seconds=2.0, connections=8, seeds=8)


@dataclass
class Round:
    index: int
    one: WrkResult
    two: WrkResult
    ratio: float
    hits: int
    asked: int
    render_ms: float  # median first request on A (drawn)
    hit_ms: float  # median request on B (from Redis)


@dataclass
class Result:
    machine: Machine
    plan: Plan
    rounds: list[Round] = field(default_factory=list)
    seconds: float = 0.0


def _get(url: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        resp.read()
        source = resp.headers.get("X-Render-Cache", "")
    return (time.perf_counter() - t0) * 1000, source


def _layout(stack: ExitStack, out: Path, count: int, redis_url: str, tag: str) -> Any:
    from tests.support.nginx import Nginx

    instances = []
    for i in range(count):
        instance = server.figserve(
            f"scaleout-{tag}-{i}", out / "logs", env={"FIGSERVE_REDIS_URL": redis_url}
        )
        stack.enter_context(instance)
        instances.append(instance)
    front = Nginx([f"{server.HOST}:{s.port}" for s in instances]).start()
    stack.callback(front.stop)
    return instances, front


def _throughput(out: Path, count: int, plan: Plan, tag: str) -> WrkResult:
    from tests.support.redis import RedisServer

    with ExitStack() as stack:
        redis = RedisServer().start()
        stack.callback(redis.stop)
        _, front = _layout(stack, out, count, redis.url, tag)
        wrk(front.url + PATH, plan.connections, 1.0)  # warm every render process
        return wrk(front.url + PATH, plan.connections, plan.seconds)


def _cache_hits(out: Path, plan: Plan, index: int) -> tuple[int, list[float], list[float]]:
    from tests.support.redis import RedisServer

    with ExitStack() as stack:
        redis = RedisServer().start()
        stack.callback(redis.stop)
        (a, b), _ = _layout(stack, out, 2, redis.url, f"hits{index}")
        drawn, hit_ms, hits = [], [], 0
        for seed in range(plan.seeds):
            path = f"/figures/histogram.png?seed={1000 * index + seed}&w=400&h=300"
            ms, _ = _get(a.url + path)
            drawn.append(ms)
            ms, source = _get(b.url + path)
            hit_ms.append(ms)
            hits += source == "redis"
        return hits, drawn, hit_ms


def run(out: Path, plan: Plan, budget: Budget) -> Result:
    t0 = time.monotonic()
    result = Result(machine(), plan)
    for index in range(plan.starts):
        if index and not budget.fits(START_ESTIMATE):
            say(f"scaleout: budget reached after {index} starts")
            break
        # Alternate which layout goes first, so drift on the machine hits both alike.
        order = (1, 2) if index % 2 == 0 else (2, 1)
        runs = {n: _throughput(out, n, plan, f"{n}x{index}") for n in order}
        hits, drawn, hit_ms = _cache_hits(out, plan, index)
        one, two = runs[1], runs[2]
        ratio = two.ok_rps / one.ok_rps if one.ok_rps else float("nan")
        result.rounds.append(
            Round(
                index,
                one,
                two,
                ratio,
                hits,
                plan.seeds,
                statistics.median(drawn),
                statistics.median(hit_ms),
            )
        )
        say(
            f"scaleout start {index + 1}: 1 instance {one.ok_rps:.1f}/s, 2 instances "
            f"{two.ok_rps:.1f}/s (ratio {ratio:.2f}); cross-instance hits {hits}/{plan.seeds}"
        )
    result.seconds = time.monotonic() - t0
    return result


def write(result: Result, out: Path, command: str) -> None:
    rounds = result.rounds
    ratio = Spread.of([r.ratio for r in rounds])
    one = Spread.of([r.one.ok_rps for r in rounds])
    two = Spread.of([r.two.ok_rps for r in rounds])
    hits = sum(r.hits for r in rounds)
    asked = sum(r.asked for r in rounds)
    errors = sum(r.one.errors + r.two.errors for r in rounds)
    lines = [
        "# Scale-out: instances behind nginx, shared cache in Redis",
        "",
        result.machine.describe(command, result.seconds),
        "",
        "| figure | value (median, min-max over fresh starts) |",
        "|---|---|",
        f"| `{PATH}` through nginx, 1 instance | {one.fmt(1, ' fig/s')} |",
        f"| `{PATH}` through nginx, 2 instances | {two.fmt(1, ' fig/s')} |",
        f"| ratio 2 instances / 1 instance | {ratio.fmt(2)} (min {ratio.min:.2f}) |",
        f"| errors under load (non-2xx, socket errors, timeouts) | {errors} |",
        f"| seeded image drawn on A, then asked of B: answered from Redis | {hits} of {asked} |",
        f"| latency on A (drawn) / on B (from Redis), median ms | "
        f"{Spread.of([r.render_ms for r in rounds]).fmt(1)} / "
        f"{Spread.of([r.hit_ms for r in rounds]).fmt(1)} |",
        "",
        f"{result.plan.connections} wrk connections, {result.plan.seconds:g} s per load. Both "
        "layouts run on this one machine and share its cores: the ratio is what the second "
        "instance and nginx cost or gain here, not what a second machine would add.",
    ]
    (out / "scaleout.md").write_text("\n".join(lines) + "\n")
    write_json(result, out / "scaleout.json")
