"""Do background jobs slow pages down? And how fast do jobs go?

One command, about two minutes, loopback only:

    .venv/bin/python bench/jobs_bench.py

It starts the shipped server (``hypercorn.toml``, two workers) on a free 127.0.0.1 port with a
temporary jobs folder, then measures:

1. the raw render rate: one thread drawing the job's items straight into a PDF, no server;
2. page loads (a figure page plus its freshly rendered image) at a fixed rate, in windows that
   take turns, idle then with a 500-item PDF job running, so that load from elsewhere on the
   machine hits both alike (goal: p99 with the job at most 1.5x idle);
3. the job's rate while the pages load, and alone, against the raw rate;
4. 2-3 again with job items in a thread of the worker instead of a process of their own
   (``FIGSERVE_JOB_EXECUTOR=thread``).

Every phase is bounded in time and requests; a job still running at the end of its phase is
cancelled. The table goes to ``bench/results/jobs.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from src.config import Settings  # noqa: E402
from src.figures import FIGURES  # noqa: E402
from src.jobs.work import PdfWriter, render_job  # noqa: E402
from tests.live import LiveServer  # noqa: E402

PAGE_FIGURES = ["histogram", "normal", "heatmap", "timeseries", "waves"]
JOB_FIGURES = ["histogram", "heatmap", "timeseries", "normal", "waves"]
GOAL = 1.5


def job_items(count: int) -> list[dict]:
    out = []
    for i in range(count):
        name = JOB_FIGURES[i % len(JOB_FIGURES)]
        params = {"seed": 10_000 + i} if FIGURES.get(name).random else {"frequency": 1 + i % 19}
        out.append({"figure": name, "params": params})
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Loads:
    latencies: list[float]
    errors: int

    def add(self, other: Loads) -> None:
        self.latencies += other.latencies
        self.errors += other.errors

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


async def page_loads(url: str, rate: float, seconds: float, seed0: int) -> Loads:
    """Open loop: a page load starts every 1/rate s whatever the earlier ones do."""
    latencies: list[float] = []
    errors = 0
    count = int(rate * seconds)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def one(i: int) -> None:
            nonlocal errors
            name = PAGE_FIGURES[i % len(PAGE_FIGURES)]
            t0 = time.perf_counter()
            # A browser's visit: the page, then its image (a new seed, so it really renders).
            # waves has no seed: a new title makes it a new figure all the same
            query = {"title": f"visit {seed0 + i}"} if name == "waves" else {"seed": seed0 + i}
            page = await http.get(f"/gallery/{name}", params=query)
            image = await http.get(f"/figures/{name}.png", params=query)
            if page.status_code == 200 and image.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

        start = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return Loads(latencies, errors)


def raw_rate(count: int, tries: int = 3) -> float:
    """Items per second of one thread rendering job items into a PDF, without a server: the
    best of a few tries, as other work on the machine only ever makes it slower."""
    return max(_raw_rate_once(count) for _ in range(tries))


def _raw_rate_once(count: int) -> float:
    settings = Settings()
    items = [_stored(item) for item in job_items(count)]
    with tempfile.TemporaryDirectory() as tmp:
        writer = PdfWriter(Path(tmp) / "raw.pdf")
        writer.add(0, render_job(FIGURES, items[0], settings.max_pixels))  # fonts, caches
        t0 = time.perf_counter()
        for index, item in enumerate(items):
            writer.add(index, render_job(FIGURES, item, settings.max_pixels))
        writer.close()
        return count / (time.perf_counter() - t0)


def _stored(item: dict) -> dict:
    spec = FIGURES.get(item["figure"])
    return {
        "figure": item["figure"],
        "params": spec.params.model_validate(item["params"]).model_dump(mode="json"),
        "options": {"format": "pdf", "w": spec.width, "h": spec.height},
    }


def start_job(http: httpx.Client, count: int) -> str:
    resp = http.post("/jobs", json={"items": job_items(count), "output": "pdf"})
    resp.raise_for_status()
    return resp.json()["id"]


def first_item(http: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    """The job once its first item is done (so its job process is up)."""
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/jobs/{job_id}").json())["done"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the job did not start: {job}")
        time.sleep(0.05)
    return job


def rate_since(http: httpx.Client, job_id: str, before: dict) -> float:
    """Items per second between two looks at the job (server time); then cancel it if running."""
    job = http.get(f"/jobs/{job_id}").json()
    if job["state"] in {"queued", "running"}:
        http.delete(f"/jobs/{job_id}")  # bounded: the phase is over
    return (job["done"] - before["done"]) / (job["seconds"] - before["seconds"])


def wait_ended(http: httpx.Client, job_id: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if http.get(f"/jobs/{job_id}").json()["state"] not in {"queued", "running"}:
            return
        time.sleep(0.2)


@dataclass
class Run:
    name: str
    idle: Loads
    busy: Loads
    busy_job_rate: float
    alone_job_rate: float | None


def measure(name: str, env: dict[str, str], args: argparse.Namespace, seed0: int) -> Run:
    """Idle and busy windows take turns, so load from elsewhere on the machine hits both alike."""
    idle, busy, rates = Loads([], 0), Loads([], 0), []
    alone_rate = None
    with tempfile.TemporaryDirectory() as jobs_dir:
        server = LiveServer(workers=2, env={"FIGSERVE_JOBS_DIR": jobs_dir, **env})
        try:
            server.start()
            with httpx.Client(base_url=server.url, timeout=30) as http:
                asyncio.run(page_loads(server.url, args.rate, 2, seed0))  # warm both workers
                for round_ in range(args.rounds):
                    print(f"[{name}] round {round_ + 1}/{args.rounds}: idle, then busy", flush=True)
                    seed = seed0 + (round_ + 1) * 10**5
                    idle.add(asyncio.run(page_loads(server.url, args.rate, args.window, seed)))
                    job_id = start_job(http, args.items)
                    before = first_item(http, job_id)
                    seed += 10**4
                    busy.add(asyncio.run(page_loads(server.url, args.rate, args.window, seed)))
                    rates.append(rate_since(http, job_id, before))
                    wait_ended(http, job_id, 30)  # the cancelled job's item in hand finishes
                if args.alone:
                    print(f"[{name}] the job alone for {args.alone:g} s", flush=True)
                    job_id = start_job(http, args.items)
                    before = first_item(http, job_id)
                    time.sleep(args.alone)
                    alone_rate = rate_since(http, job_id, before)
                    wait_ended(http, job_id, 30)
        finally:
            server.stop()
    return Run(name, idle, busy, sum(rates) / len(rates), alone_rate)


def table(runs: list[Run], raw: float, args: argparse.Namespace, load: str) -> str:
    lines = [
        "# Background jobs vs. page latency",
        "",
        f"Shipped server with 2 workers on a {os.cpu_count()}-core machine (load average "
        f"before: {load}); page loads (figure "
        f"page + its freshly rendered PNG) at {args.rate:g}/s; {args.rounds} rounds of "
        f"{args.window:g} s idle then {args.window:g} s with a {args.items}-item PDF job running "
        f"(one job slot per worker). Goal: p99 busy/idle <= {GOAL}x. With "
        f"{int(args.rate * args.window * args.rounds)} page loads per column, p99 is about the "
        "second-worst load: other work on the machine moves it a lot, p95 less. "
        "`bench/jobs_bench.py`.",
        "",
        "| setup | idle p50 / p95 / p99 ms | busy p50 / p95 / p99 ms | p95 ratio | p99 ratio | "
        "errors | job items/s (with pages) | job items/s (alone) | raw items/s (1 thread) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        ratio = run.busy.p(99) / run.idle.p(99)
        alone = f"{run.alone_job_rate:.1f}" if run.alone_job_rate is not None else "-"
        lines.append(
            f"| {run.name} | {run.idle.p(50):.0f} / {run.idle.p(95):.0f} / {run.idle.p(99):.0f} "
            f"| {run.busy.p(50):.0f} / {run.busy.p(95):.0f} / {run.busy.p(99):.0f} "
            f"| {run.busy.p(95) / run.idle.p(95):.2f}x "
            f"| **{ratio:.2f}x** {'✓' if ratio <= GOAL else '✗'} "
            f"| {run.idle.errors + run.busy.errors} | {run.busy_job_rate:.1f} "
            f"({run.busy_job_rate / raw:.0%} of raw) | {alone}"
            f"{f' ({run.alone_job_rate / raw:.0%} of raw)' if run.alone_job_rate else ''} "
            f"| {raw:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5.0, help="page loads per second")
    parser.add_argument("--window", type=float, default=6.0, help="seconds of one window")
    parser.add_argument("--rounds", type=int, default=4, help="idle + busy windows per setup")
    parser.add_argument("--items", type=int, default=500, help="items of the job")
    parser.add_argument("--alone", type=float, default=6.0, help="seconds of the job alone")
    parser.add_argument("--no-variant", action="store_true", help="skip the job-thread run")
    args = parser.parse_args()
    if args.window * args.rounds > 40 or args.rate > 20 or args.alone > 20:
        parser.error("keep it bounded: window x rounds <= 40 s, --rate <= 20, --alone <= 20")

    t0 = time.monotonic()
    # Other work on the machine skews every number: the table says how busy it was.
    load = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "?"
    )
    print("raw render rate, one thread", flush=True)
    raw = raw_rate(30)
    runs = [measure("job process per worker (default)", {}, args, 0)]
    if not args.no_variant:
        variant = argparse.Namespace(**{**vars(args), "alone": 0})
        runs.append(
            measure("job thread in the worker", {"FIGSERVE_JOB_EXECUTOR": "thread"}, variant, 10**7)
        )
    text = table(runs, raw, args, load)
    out = ROOT / "bench" / "results" / "jobs.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to bench/results/jobs.md in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
