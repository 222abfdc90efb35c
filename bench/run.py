"""The full benchmark: figserve as shipped, the Flask reference on two servers, the raw limit.

The machine may be shared, so nothing is reported as an absolute alone: throughput runs
alternate with raw-limit runs (the ratio uses the raw runs around it, and the spread over rounds
is reported), CPU costs are measured interleaved in one process, and server CPU per image is
read from the kernel's per-process accounting, which other load on the machine does not change.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from . import browser, harness, raw, suite
from .harness import Server, say, wrk

SOAK_RENDERS = 10_000


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc accounting)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _split(server: Server, since: int) -> list[int]:
    """Image responses per worker process in the access log after offset ``since``."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"\[(\d+)\] \[INFO\] [\d.:]+ \"GET /fig/", server.output[since:]):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return sorted(counts.values(), reverse=True)


def interleaved(
    server: Server,
    limit: raw.RawLimit,
    rounds: int,
    seconds: float,
    path: str,
    per_log: bool = False,
) -> dict[str, Any]:
    """Raw limit, 6 clients, 12 clients, repeated; then one more raw run to close the brackets.

    Each server run's ratio divides by the mean of the raw runs just before and after it.
    """
    raws: list[float] = []
    runs: dict[int, list[dict[str, Any]]] = {6: [], 12: []}
    pids = server.worker_pids()
    for _ in range(rounds):
        raws.append(limit.measure(seconds)["fps"])
        for clients in (6, 12):
            mark = len(server.output) if per_log else 0
            cpu0 = _cpu_seconds(pids)
            result = wrk(server.url + path, clients, seconds)
            result["server_cpu_ms_per_ok"] = (
                1000 * (_cpu_seconds(pids) - cpu0) / max(1, result["ok"])
            )
            if per_log:
                result["split"] = _split(server, mark)
            result["raw_index"] = len(raws) - 1
            runs[clients].append(result)
    raws.append(limit.measure(seconds)["fps"])
    out: dict[str, Any] = {"raw_fps": raws, "path": path}
    for clients, results in runs.items():
        ratios = []
        for r in results:
            i = r["raw_index"]
            r["raw_fps"] = (raws[i] + raws[i + 1]) / 2
            r["ratio"] = r["ok_rps"] / r["raw_fps"]
            ratios.append(r["ratio"])
        out[clients] = {
            "runs": results,
            "ok_rps": harness.median([r["ok_rps"] for r in results]),
            "ratio": harness.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "errors": sum(r["errors"] for r in results),
            "requests": sum(r["requests"] for r in results),
            "server_cpu_ms_per_ok": harness.median([r["server_cpu_ms_per_ok"] for r in results]),
        }
    return out


def _image_requests(result: dict[str, Any]) -> int:
    return sum(r["ok"] for c in (6, 12) for r in result[c]["runs"])


def run_all(quick: bool = False) -> dict[str, Any]:
    t0 = time.monotonic()
    seconds = 2.0 if quick else 5.0
    rounds = 1 if quick else 3
    soak_renders = 1_000 if quick else SOAK_RENDERS
    # Whatever is left of this budget when the soak starts bounds it (bench/run allows 600 s).
    budget = 200.0 if quick else 420.0
    loads = 3 if quick else 8
    results: dict[str, Any] = {
        "machine": harness.machine(),
        "quick": quick,
        "hypercorn": {k: v for k, v in harness.shipped_hypercorn().items() if k != "bind"},
        "settings": _settings(),
        "wrk": {
            "threads": "min(clients, 2)",
            "duration_s": seconds,
            "timeout_s": 10,
            "page_probe": f"1 connection, {suite.PAGE_PROBE_DELAY_MS} ms between requests",
        },
    }

    say("CPU per image: figserve and the pyplot reference, interleaved in one process")
    results["cpu"] = raw.cpu_per_image(rounds=15 if quick else 30)

    with raw.RawLimit() as limit:
        say("raw limit: warming up one process per core")
        limit.measure(1.0)

        say("figserve as shipped")
        fs = harness.figserve()
        try:
            results["figserve"] = _figserve(
                fs, limit, seconds, rounds, loads, soak_renders, budget - (time.monotonic() - t0)
            )
        finally:
            fs.stop()

        say("figserve with one worker: cached (seeded) requests per second")
        one = harness.figserve(name="figserve-1-worker", workers=1)
        try:
            cached = [suite.cached(one, seconds) for _ in range(rounds if not quick else 1)]
        finally:
            one.stop()
        results["cached"] = {
            "runs": cached,
            "rps": harness.median([c["ok_rps"] for c in cached]),
            "min": min(c["ok_rps"] for c in cached),
            "max": max(c["ok_rps"] for c in cached),
            "errors": sum(c["errors"] for c in cached),
        }

        fig_ref = "/fig/5_3?dpi=100"  # the same 400x300 pixels as figserve's /fig/5_3
        for name, start in (("flask_dev", harness.flask_dev), ("gunicorn", harness.gunicorn)):
            say(f"Flask reference on {name}")
            server = start()
            try:
                wrk(server.url + fig_ref, 12, 2)  # warm-up
                ref: dict[str, Any] = interleaved(server, limit, 1, seconds, fig_ref)
                ref["page"] = suite.page_under_load(server, seconds, fig_path=fig_ref)
                ref["valid"] = harness.validate_images(server.url, fig_ref)
                # The original's own size (300 dpi), for CPU and bytes per image served.
                ref["seed_size"] = wrk(server.url + "/fig/5_3", 6, seconds)
            finally:
                server.stop()
            results[name] = ref

        say("raw limit of the pyplot reference (what the Flask servers could reach)")
        results["raw_pyplot"] = limit.measure(seconds, kind="pyplot")
    results["seconds"] = time.monotonic() - t0
    say(f"measurements done in {results['seconds']:.0f} s")
    return results


def _figserve(
    fs: Server,
    limit: raw.RawLimit,
    seconds: float,
    rounds: int,
    loads: int,
    soak_renders: int,
    budget: float,
) -> dict[str, Any]:
    t_start = time.monotonic()
    out: dict[str, Any] = {"workers": len(fs.worker_pids())}
    renders = 0
    warm = wrk(fs.url + suite.FIG, 12, 3)
    renders += warm["ok"]

    say("figserve: 12-image page in headless Chromium")
    out["browser"] = browser.measure(fs.url, loads=loads)
    renders += browser.IMAGES * (loads + 2)

    say("figserve: /fig/5_3 at 6 and 12 clients, alternating with the raw limit")
    out["throughput"] = interleaved(fs, limit, rounds, seconds, suite.FIG, per_log=True)
    renders += _image_requests(out["throughput"])

    say("figserve: /normal/5_3 page latency, idle and while images saturate every core")
    out["page_idle"] = suite.page_idle(fs, 3)
    out["page"] = suite.page_under_load(fs, seconds)
    renders += out["page"]["load"]["ok"]
    out["valid"] = harness.validate_images(fs.url, suite.FIG)
    renders += out["valid"]["checked"]

    # Warmed up by now (a few thousand renders of every kind this run makes): the baseline.
    out["rss_warm"] = fs.rss_mb()
    out["renders_at_warm"] = renders
    say(f"figserve: soak to {soak_renders:,} renders")
    soak_runs = []
    while renders < soak_renders and time.monotonic() - t_start < budget:
        left = budget - (time.monotonic() - t_start)
        r = wrk(fs.url + suite.FIG, 12, max(2.0, min(20.0, left)))
        soak_runs.append(r)
        renders += r["ok"]
    out["soak_errors"] = sum(r["errors"] for r in soak_runs)
    out["renders"] = renders
    out["rss_end"] = fs.rss_mb()
    return out


def _settings() -> dict[str, Any]:
    from dataclasses import asdict

    from src.config import Settings

    s = asdict(Settings.from_env())
    keep = ("render_threads", "render_queue_limit", "png_compress_level", "cache_bytes")
    return {k: s[k] for k in keep if k in s}
