"""Each speed lever measured side by side: ``python -m bench --levers``.

Two parts, both written to ``results/levers.md`` (and ``levers.json``):

* encoding levers, in one process with the variants interleaved: PNG writer, compression level,
  pixel size (srcset 1x/2x against 300 dpi) and reusing one Figure per thread;
* serving levers, each a figserve configuration started in turn, with the raw limit measured
  again before each, so every configuration is judged by its ratio, not its absolute speed.
"""

from __future__ import annotations

import io
import multiprocessing
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import browser, harness, raw, suite

# --- encoding levers ---------------------------------------------------------------------------


def _encoders(dpr: int) -> dict[str, Any]:
    from matplotlib.figure import Figure

    from src.figures.catalog import FIGURES, NormalParams
    from src.render import ImageOptions, _save_options, encode, job_for

    spec = FIGURES.get("normal")
    job = job_for(spec, NormalParams(mean=5, var=3), ImageOptions(dpr=dpr), 6_000_000)

    def pillow(level: int) -> Any:
        def run() -> bytes:
            fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
            job.draw(fig)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=job.canvas.dpi, **_save_options("png", level))
            return buf.getvalue()

        return run

    reused = threading.local()

    def reuse_figure() -> bytes:
        # One Figure per thread, cleared between renders, instead of a new one per render.
        from src.render import _png

        fig = getattr(reused, "fig", None)
        if fig is None:
            fig = reused.fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
        fig.clear()
        job.draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="rgba", dpi=job.canvas.dpi)
        c = job.canvas
        return _png(buf.getbuffer(), c.width_px, c.height_px, c.dpi, 6)

    def pyplot() -> bytes:
        from bench.flask_ref import render_png

        return render_png(5, 3, dpi=100 * dpr)

    variants = {
        "pyplot + savefig (reference), zlib 6": pyplot,
        "Figure + savefig PNG (Pillow), zlib 6": pillow(6),
        "Figure + savefig PNG (Pillow), zlib 1": pillow(1),
    }
    for level in (1, 3, 6, 9):
        variants[f"figserve PNG writer, zlib {level}"] = (lambda lv: lambda: encode(job, lv))(level)
    variants["figserve PNG writer, zlib 6, Figure reused per thread"] = reuse_figure
    return variants


def _encode_levers(dpr: int, rounds: int) -> dict[str, Any]:
    variants = _encoders(dpr)
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    sizes: dict[str, list[int]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            t0 = time.process_time()
            data = run()
            times[name].append(time.process_time() - t0)
            sizes[name].append(len(data))
    return {
        "dpr": dpr,
        "rounds": rounds,
        "rows": [
            # Every render is a new random sample, so bytes too are a median.
            {
                "variant": n,
                "cpu_ms": statistics.median(t) * 1000,
                "bytes": statistics.median(sizes[n]),
            }
            for n, t in times.items()
        ],
    }


def encode_levers(rounds: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.starmap(_encode_levers, [(dpr, rounds) for dpr in (1, 2, 3)])


# --- serving levers ----------------------------------------------------------------------------


@dataclass
class Config:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    toml: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None
    app: str = "src.app:app"


def _configs() -> list[Config]:
    pool = "bench.procpool_app:app"
    # 12 clients can all land on one worker; 16 keeps the prototype clear of 503s.
    queue16 = {"FIGSERVE_RENDER_QUEUE_LIMIT": "16"}
    return [
        Config("shipped defaults"),
        Config("workers 2, render_threads 2", workers=2, env={"FIGSERVE_RENDER_THREADS": "2"}),
        Config("workers 2, render_threads 1", workers=2),
        Config("uvloop worker class", toml={"worker_class": "uvloop"}),
        Config("keep_alive_max_requests 1", toml={"keep_alive_max_requests": 1}),
        Config("png_compress_level 6", env={"FIGSERVE_PNG_COMPRESS_LEVEL": "6"}),
        Config("GIL switch interval 1 ms", app="bench.switch_app:app"),
        Config("prototype: process pool per worker, workers 2, queue 16", workers=2, app=pool,
               env=queue16),
    ]  # fmt: skip


CACHED_VARIANTS = {
    "asyncio (shipped)": {},
    "uvloop": {"worker_class": "uvloop"},
    "asyncio, no access log": {"accesslog": None},
}


def cached_levers(seconds: float, rounds: int = 2) -> dict[str, list[float]]:
    """Cached requests per second of one worker, the variants alternating."""
    out: dict[str, list[float]] = {name: [] for name in CACHED_VARIANTS}
    for _ in range(rounds):
        for name, toml in CACHED_VARIANTS.items():
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower())
            server = harness.figserve(name=f"lever-cached-{slug}", workers=1, toml=toml)
            try:
                out[name].append(suite.cached(server, seconds)["ok_rps"])
            finally:
                server.stop()
    return out


def _renders_by_worker(server: harness.Server, since: int) -> dict[str, int]:
    """Image responses per worker pid, from the access log written after offset ``since``."""
    counts: dict[str, int] = {}
    for match in re.finditer(r"\[(\d+)\] \[INFO\] [\d.:]+ \"GET /fig/", server.output[since:]):
        counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def serving_lever(config: Config, seconds: float, loads: int, cpu_one_ms: float) -> dict[str, Any]:
    limit = raw.raw_limit(seconds)["fps"]
    server = harness.figserve(
        name=f"lever-{re.sub(r'[^a-z0-9]+', '-', config.name.lower())}",
        workers=config.workers,
        env=config.env,
        toml=config.toml,
        app=config.app,
    )
    try:
        harness.wrk(server.url + suite.FIG, 12, 2)  # warm-up
        mark = len(server.output)
        load = suite.throughput(server, seconds)
        split = sorted(_renders_by_worker(server, mark).values(), reverse=True)
        page = suite.page_under_load(server, seconds)
        page_browser = suite.browser_page(server, loads)
        cached = suite.cached(server, seconds)
    finally:
        server.stop()
    ideal_ms = cpu_one_ms * browser.IMAGES / harness.CORES
    return {
        "config": config.name,
        "raw_fps": limit,
        "c6_rps": load[6]["ok_rps"],
        "c12_rps": load[12]["ok_rps"],
        "c6_ratio": load[6]["ok_rps"] / limit,
        "c12_ratio": load[12]["ok_rps"] / limit,
        "errors": load[6]["errors"] + load[12]["errors"],
        "renders_by_worker": split,
        "page_p50_ms": page["page"]["p50_ms"],
        "page_p99_ms": page["page"]["p99_ms"],
        "browser_ms": page_browser["median_ms"],
        "browser_ratio": page_browser["median_ms"] / ideal_ms,
        "cached_rps": cached["ok_rps"],
        "cached_errors": cached["errors"],
    }


def duplicate_images(loads: int = 2) -> dict[str, Any]:
    """Renders the server does for a page that repeats one image URL twelve times."""
    server = harness.figserve(name="lever-duplicates")
    out = {}
    try:
        for label, query in (("unseeded", ""), ("seeded", "?seed=3")):
            html = "<!doctype html>" + "".join(
                f'<img src="{server.url}/fig/5_3{query}" width="400" height="300">'
                for _ in range(12)
            )
            mark = len(server.output)
            result = browser.measure(server.url, loads=loads, warm=0, html=html, fresh_context=True)
            out[label] = {
                "img_tags": 12,
                "requests_per_load": sum(_renders_by_worker(server, mark).values()) / loads,
                "load_ms": result["median_ms"],
            }
    finally:
        server.stop()
    return out


def run_levers(out: Any, seconds: float = 5, loads: int = 4) -> dict[str, Any]:
    t0 = time.monotonic()
    say = harness.say
    say("encoding levers (one process, variants interleaved)")
    encoding = encode_levers(rounds=15)
    cpu_one_ms = raw.cpu_per_image(dprs=(1,), rounds=20)[1]["cpu_ms"]["figserve"]
    serving = []
    for config in _configs():
        say(f"serving lever: {config.name}")
        try:
            serving.append(serving_lever(config, seconds, loads, cpu_one_ms))
        except (RuntimeError, TimeoutError) as exc:  # one failing configuration is a result too
            serving.append({"config": config.name, "error": str(exc).splitlines()[0]})
    say("cached requests per worker: asyncio and uvloop")
    cached = cached_levers(seconds)
    say("duplicate images on one page")
    duplicates = duplicate_images()
    results = {
        "encoding": encoding,
        "cpu_one_ms": cpu_one_ms,
        "serving": serving,
        "duplicates": duplicates,
        "cached": cached,
        "seconds": time.monotonic() - t0,
        "machine": harness.machine(),
    }
    from .report import write_levers

    write_levers(results, out)
    return results


AB_SETS: dict[str, Any] = {
    # Worker processes x render threads per worker, at the same total of 4 render threads.
    "layouts": lambda: [
        Config("workers 2, render_threads 2", workers=2, env={"FIGSERVE_RENDER_THREADS": "2"}),
        Config("workers 4, render_threads 1", workers=4, env={"FIGSERVE_RENDER_THREADS": "1"}),
        Config("workers 2, render_threads 1", workers=2, env={"FIGSERVE_RENDER_THREADS": "1"}),
    ],
    # The admission limit per worker, which a worker holding most connections reaches first.
    "queue": lambda: [
        Config("shipped (queue limit 8)"),
        Config("queue limit 16", env={"FIGSERVE_RENDER_QUEUE_LIMIT": "16"}),
        Config("queue limit 16, uvloop", env={"FIGSERVE_RENDER_QUEUE_LIMIT": "16"},
               toml={"worker_class": "uvloop"}),
    ],
}  # fmt: skip


def run_ab(
    out: Any, name: str = "layouts", rounds: int = 3, seconds: float = 5, loads: int = 4
) -> dict[str, Any]:
    """A set of configurations alternated ``rounds`` times: the spread shows the noise."""
    configs = AB_SETS[name]()
    t0 = time.monotonic()
    cpu_one_ms = raw.cpu_per_image(dprs=(1,), rounds=20)[1]["cpu_ms"]["figserve"]
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in configs}
    for i in range(rounds):
        for config in configs:
            harness.say(f"{name}: {config.name}, round {i + 1} of {rounds}")
            runs[config.name].append(serving_lever(config, seconds, loads, cpu_one_ms))
    results = {
        "name": name,
        "runs": runs,
        "machine": harness.machine(),
        "seconds": time.monotonic() - t0,
    }
    from .report import write_ab

    write_ab(results, out)
    return results
