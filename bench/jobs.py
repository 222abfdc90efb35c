"""Do background jobs slow pages down, and how fast do jobs go? ``python -m bench --jobs``.

figserve as shipped, with a jobs folder of its own:

1. the raw rate: one thread drawing the job's items straight into a multi-page PDF, no server;
2. page visits (a figure page, then its freshly rendered image) at a fixed rate, in windows that
   take turns, idle then with a 500-item PDF job running, so that load from elsewhere on the
   machine hits both alike (goal: p99 with the job at most 1.5x idle);
3. the job's rate while the pages load, and alone, against the raw rate.

Every window is bounded in time and requests; a job still running at the end of its window is
cancelled.
"""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import client, measure, server
from .measure import Budget, Machine, say
from .server import StopReport
from .stats import percentile, write_json

PAGE_FIGURES = ["histogram", "normal", "heatmap", "timeseries", "waves"]
JOB_FIGURES = ["histogram", "heatmap", "timeseries", "normal", "waves"]
GOAL = 1.5


@dataclass(frozen=True)
class Plan:
    rate: float = 5.0  # page visits per second
    window: float = 6.0  # seconds of one idle or busy window
    rounds: int = 4
    items: int = 500
    alone: float = 6.0  # seconds the job runs alone at the end

    @classmethod
    def quick(cls) -> Plan:
        return cls(rate=3.0, window=2.0, rounds=1, items=40, alone=2.0)


def job_items(count: int) -> list[dict[str, Any]]:
    from figserve.figures import FIGURES

    out = []
    for i in range(count):
        name = JOB_FIGURES[i % len(JOB_FIGURES)]
        spec = FIGURES.get(name)
        params = {"seed": 10_000 + i} if spec.random else {"frequency": 1 + i % 19}
        out.append({"figure": name, "params": params})
    return out


def raw_rate(count: int, tries: int = 3) -> float:
    """Items per second of one thread drawing items into one PDF without a server: the best of
    a few tries, as other work on the machine only ever makes it slower."""
    return max(_raw_rate_once(count) for _ in range(tries))


def _raw_rate_once(count: int) -> float:
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    from figserve.figures import FIGURES

    def page(pdf: PdfPages, item: dict[str, Any]) -> None:
        spec = FIGURES.get(item["figure"])
        params = spec.params.model_validate(item["params"])
        fig = Figure(figsize=(spec.width / 100, spec.height / 100), dpi=100)
        spec.draw(fig, params)
        pdf.savefig(fig, dpi=100)

    items = job_items(count)
    with tempfile.TemporaryDirectory() as tmp, PdfPages(Path(tmp) / "raw.pdf") as pdf:
        page(pdf, items[0])  # fonts, caches
        t0 = time.perf_counter()
        for item in items:
            page(pdf, item)
        return count / (time.perf_counter() - t0)


@dataclass
class Visits:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, other: Visits) -> None:
        self.latencies_ms += other.latencies_ms
        self.errors += other.errors

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def page_visits(port: int, rate: float, seconds: float, seed0: int) -> Visits:
    """Open loop: a visit starts every 1/rate s whatever the earlier ones do."""
    out = Visits()

    def visit(i: int) -> float | None:
        name = PAGE_FIGURES[i % len(PAGE_FIGURES)]
        # A new seed (waves has none: a new title) makes the image a new render.
        query = f"title=visit+{seed0 + i}" if name == "waves" else f"seed={seed0 + i}"
        t0 = time.perf_counter()
        page, _ = client.request(port, "GET", f"/gallery/{name}?{query}")
        image, _ = client.request(port, "GET", f"/figures/{name}.png?{query}")
        return (time.perf_counter() - t0) * 1000 if page == image == 200 else None

    count = int(rate * seconds)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        start = time.perf_counter()
        futures = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(visit, i))
        for f in futures:
            try:
                ms = f.result()
            except OSError:
                ms = None
            if ms is None:
                out.errors += 1
            else:
                out.latencies_ms.append(ms)
    return out


def _start_job(port: int, count: int) -> str:
    status, data = client.request(
        port, "POST", "/jobs", {"items": job_items(count), "output": "pdf"}
    )
    if status != 202:
        raise RuntimeError(f"POST /jobs: {status} {data[:300]!r}")
    return json.loads(data)["id"]


def _first_item(port: int, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once its first item is done (so whatever renders it is up)."""
    deadline = time.monotonic() + timeout
    while (job := client.get_json(port, f"/jobs/{job_id}"))["done"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the job did not start: {job}")
        time.sleep(0.05)
    return job


def _rate_since(port: int, job_id: str, before: dict[str, Any]) -> float:
    """Items per second between two looks at the job (server time); then cancel it."""
    job = client.get_json(port, f"/jobs/{job_id}")
    if job["state"] in {"queued", "running"}:
        client.request(port, "DELETE", f"/jobs/{job_id}")  # bounded: the window is over
    return (job["done"] - before["done"]) / max(1e-9, job["seconds"] - before["seconds"])


def _wait_ended(port: int, job_id: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if client.get_json(port, f"/jobs/{job_id}")["state"] not in {"queued", "running"}:
            return
        time.sleep(0.2)


@dataclass
class JobsResult:
    machine: Machine
    plan: Plan
    raw_items_per_s: float
    idle: Visits = field(default_factory=Visits)
    busy: Visits = field(default_factory=Visits)
    busy_job_rates: list[float] = field(default_factory=list)
    alone_job_rate: float | None = None
    stop: StopReport | None = None
    seconds: float = 0.0


def run(out: Path, plan: Plan, budget: Budget) -> JobsResult:
    t0 = time.monotonic()
    say("raw job rate: one thread, items into one PDF")
    result = JobsResult(measure.machine(), plan, raw_rate(min(30, plan.items)))
    srv = server.figserve("jobs", out / "raw")
    with srv:
        page_visits(srv.port, plan.rate, 2, 0)  # warm every worker
        for rnd in range(plan.rounds):
            if not budget.fits(2 * plan.window + 40):
                say(f"round {rnd + 1}: not run, {budget.left():.0f} s of the budget left")
                break
            say(f"jobs: round {rnd + 1} of {plan.rounds}: idle, then with a job running")
            seed = (rnd + 1) * 10**5
            result.idle.add(page_visits(srv.port, plan.rate, plan.window, seed))
            job_id = _start_job(srv.port, plan.items)
            before = _first_item(srv.port, job_id)
            result.busy.add(page_visits(srv.port, plan.rate, plan.window, seed + 10**4))
            result.busy_job_rates.append(_rate_since(srv.port, job_id, before))
            _wait_ended(srv.port, job_id, 30)  # the cancelled job's item in hand finishes
        if plan.alone and budget.fits(plan.alone + 40):
            say(f"jobs: the job alone for {plan.alone:g} s")
            job_id = _start_job(srv.port, plan.items)
            before = _first_item(srv.port, job_id)
            time.sleep(plan.alone)  # the window the rate is measured over
            result.alone_job_rate = _rate_since(srv.port, job_id, before)
            _wait_ended(srv.port, job_id, 30)
    result.stop = srv.stopped
    result.seconds = time.monotonic() - t0
    return result


def write(r: JobsResult, out: Path, command: str) -> None:
    write_json(r, out / "jobs.json")
    p = r.plan
    idle, busy = r.idle, r.busy
    busy_rate = sum(r.busy_job_rates) / len(r.busy_job_rates) if r.busy_job_rates else 0.0
    ratio = busy.p(99) / idle.p(99)
    alone = (
        f"{r.alone_job_rate:.1f} ({r.alone_job_rate / r.raw_items_per_s:.0%} of raw)"
        if r.alone_job_rate is not None
        else "-"
    )
    lines = [
        "# Background jobs vs. page latency",
        "",
        r.machine.describe(command, r.seconds),
        "",
        f"figserve as shipped; page visits (a figure page, then its freshly rendered PNG) at "
        f"{p.rate:g}/s; {p.rounds} rounds of {p.window:g} s idle then {p.window:g} s with a "
        f"{p.items}-item PDF job running. Goal: p99 busy/idle ≤ {GOAL}x. With "
        f"{int(p.rate * p.window * p.rounds)} visits per column, p99 is about the second-worst "
        "visit: other work on the machine moves it a lot, p95 less.",
        "",
        "| idle p50 / p95 / p99 ms | busy p50 / p95 / p99 ms | p95 ratio | p99 ratio | errors "
        "| job items/s (with pages) | job items/s (alone) | raw items/s (1 thread) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {idle.p(50):.0f} / {idle.p(95):.0f} / {idle.p(99):.0f} "
        f"| {busy.p(50):.0f} / {busy.p(95):.0f} / {busy.p(99):.0f} "
        f"| {busy.p(95) / idle.p(95):.2f}x | **{ratio:.2f}x** "
        f"{'met' if ratio <= GOAL else 'not met'} | {idle.errors + busy.errors} "
        f"| {busy_rate:.1f} ({busy_rate / r.raw_items_per_s:.0%} of raw) | {alone} "
        f"| {r.raw_items_per_s:.1f} |",
    ]
    (out / "jobs.md").write_text("\n".join(lines) + "\n")
