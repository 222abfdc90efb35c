"""Markdown tables and the chart (matplotlib's object API, no pyplot) from the results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _f(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def write_levers(results: dict[str, Any], out: Path) -> None:
    (out / "levers.json").write_text(json.dumps(results, indent=1, default=str))
    m = results["machine"]
    lines = [
        "# Speed levers, each measured side by side",
        "",
        f"{m['date']}; {m['cores']} cores, Python {m['python']}, matplotlib {m['matplotlib']}, "
        f"{m['wrk']}; load average at start {m['load_average_at_start'][0]:.1f}. "
        f"Run: `python -m bench --levers` ({results['seconds']:.0f} s).",
        "",
        "## Encoding: CPU per image and bytes, seed figure, variants interleaved in one process",
        "",
    ]
    for block in results["encoding"]:
        rows = block["rows"]
        base = next(r for r in rows if r["variant"].startswith("pyplot"))
        w, h = 400 * block["dpr"], 300 * block["dpr"]
        lines += [
            f"### {w}x{h} (dpr {block['dpr']}), median of {block['rounds']}",
            "",
            "| variant | CPU ms | vs pyplot | bytes (median) | vs pyplot |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['variant']} | {_f(r['cpu_ms'])} | {r['cpu_ms'] / base['cpu_ms']:.2f} | "
                f"{r['bytes']:,.0f} | {r['bytes'] / base['bytes']:.2f} |"
            )
        lines.append("")
    lines += [
        "## Serving: figserve configurations, each against the raw limit measured just before it",
        "",
        f"One render's CPU (400x300): {results['cpu_one_ms']:.1f} ms. Browser ratio = 12-image "
        "page load / (that x 12 / cores). Renders by worker: image responses of each worker "
        "during the 6- and 12-client runs.",
        "",
        "| configuration | raw limit fig/s | 6 clients | 12 clients | errors | renders by worker "
        "| page p50 / p99 ms under load | 12-image page ms (ratio) | cached req/s (server) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results["serving"]:
        if "error" in r:
            lines.append(f"| {r['config']} | failed: {r['error']} |||||||")
            continue
        lines.append(
            f"| {r['config']} | {_f(r['raw_fps'])} | {_f(r['c6_rps'])} ({r['c6_ratio']:.2f}) | "
            f"{_f(r['c12_rps'])} ({r['c12_ratio']:.2f}) | {r['errors']} | "
            f"{' / '.join(str(n) for n in r['renders_by_worker'])} | "
            f"{_f(r['page_p50_ms'])} / {_f(r['page_p99_ms'])} | "
            f"{_f(r['browser_ms'], 0)} ({r['browser_ratio']:.2f}) | {_f(r['cached_rps'], 0)} |"
        )
    c = results["cached"]
    lines += [
        "",
        "## Cached (seeded) requests per second, one worker, variants alternating",
        "",
        "| variant | runs | median |",
        "|---|---|---:|",
    ]
    for loop, values in c.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        lines.append(f"| {loop} | {runs} | {sorted(values)[len(values) // 2]:,.0f} |")
    d = results["duplicates"]
    lines += [
        "",
        "## Repeated images on one page",
        "",
        "| page | img tags | requests reaching the server per load |",
        "|---|---:|---:|",
    ]
    for label, r in d.items():
        lines.append(
            f"| one {label} URL, 12 times | {r['img_tags']} | {r['requests_per_load']:g} |"
        )
    (out / "levers.md").write_text("\n".join(lines) + "\n")


# --- the main run ------------------------------------------------------------------------------

SERVERS = (("figserve", "figserve"), ("flask_dev", "Flask dev (threaded)"),
           ("gunicorn", "Gunicorn gthread"))  # fmt: skip


def goals(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its measured value, as ``(measured, goal, higher_is_better)``."""
    fs = r["figserve"]
    tp = fs["throughput"]
    cpu3 = r["cpu"][3]["cpu_ms"]
    cpu1 = r["cpu"][1]["cpu_ms"]["figserve"]
    ideal = cpu1 * 12 / r["machine"]["cores"]
    growth = rss_growth(fs)
    return [
        {"name": "/fig/5_3 at 6 clients / raw limit", "value": tp[6]["ratio"], "goal": 0.95,
         "higher": True, "fmt": "{:.2f}"},
        {"name": "/fig/5_3 at 12 clients / raw limit", "value": tp[12]["ratio"], "goal": 0.95,
         "higher": True, "fmt": "{:.2f}"},
        {"name": "page p99 under image load (ms)", "value": fs["page"]["page"]["p99_ms"],
         "goal": 25, "higher": False, "fmt": "{:.1f}"},
        {"name": "cached requests/s per worker", "value": r["cached"]["rps"], "goal": 3000,
         "higher": True, "fmt": "{:,.0f}"},
        {"name": "CPU per 1200x900 PNG / pyplot", "value": cpu3["figserve"] / cpu3["pyplot"],
         "goal": 0.6, "higher": False, "fmt": "{:.2f}"},
        {"name": "12-image page / (12 x CPU / cores)",
         "value": fs["browser"]["median_ms"] / ideal, "goal": 1.15, "higher": False,
         "fmt": "{:.2f}"},
        {"name": "RSS growth per 1,000 renders (MB)", "value": growth, "goal": 5,
         "higher": False, "fmt": "{:.2f}"},
    ]  # fmt: skip


def met(g: dict[str, Any]) -> bool:
    return (
        g["value"] >= g["goal"]
        if g["higher"]
        else g["value"] < g["goal"]
        or (g["value"] == g["goal"] and g["name"].startswith(("page", "CPU", "12-image")))
    )


def rss_growth(fs: dict[str, Any]) -> float:
    """Largest per-worker RSS growth per 1,000 renders (renders split evenly over workers)."""
    per_worker = (fs["renders"] - fs["renders_at_warm"]) / max(1, fs["workers"])
    if per_worker <= 0:
        return float("nan")  # no renders after warm-up (a --quick run): nothing to measure
    growths = [
        (fs["rss_end"][pid] - fs["rss_warm"][pid]) / (per_worker / 1000)
        for pid in fs["rss_warm"]
        if pid in fs["rss_end"]
    ]
    return max(growths) if growths else float("nan")


def _ratio_cell(t: dict[str, Any]) -> str:
    spread = f", {t['ratio_min']:.2f}-{t['ratio_max']:.2f}" if len(t["runs"]) > 1 else ""
    return f"{t['ok_rps']:.1f} fig/s ({t['ratio']:.2f}{spread})"


def table(r: dict[str, Any]) -> str:
    fs, fd, gu = r["figserve"], r["flask_dev"], r["gunicorn"]
    g = {x["name"]: x for x in goals(r)}
    ok = {name: ("met" if met(x) else "**not met**") for name, x in g.items()}
    cpu1, cpu3 = r["cpu"][1], r["cpu"][3]
    raw_fps = fs["throughput"]["raw_fps"]
    ideal = cpu1["cpu_ms"]["figserve"] * 12 / r["machine"]["cores"]
    b = fs["browser"]

    def errors(ref: dict[str, Any]) -> str:
        runs = [*ref[6]["runs"], *ref[12]["runs"], ref["page"]["load"]]
        n = sum(r["errors"] for r in runs)
        total = sum(r["requests"] for r in runs)
        status = sum(r["error_detail"]["status"] for r in runs)
        v = ref["valid"]
        kinds = f" ({', '.join(v['kinds'])})" if v["kinds"] else ""
        return (
            f"{n:,} of {total:,} ({status:,} non-2xx); sample: {v['bad']} of {v['checked']} "
            f"failed{kinds}"
        )

    def page(ref: dict[str, Any]) -> str:
        p = ref["page"]["page"]
        return f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f}"

    wrk_cpu = max(c["wrk_cpu_share"] for c in r["cached"]["runs"])
    wall_ideal = 12 / (sum(raw_fps) / len(raw_fps)) * 1000
    rng = ", range" if len(fs["throughput"][6]["runs"]) > 1 else ""
    growth = g["RSS growth per 1,000 renders (MB)"]["value"]
    warm = sum(fs["rss_warm"].values()) / len(fs["rss_warm"])
    end = sum(fs["rss_end"].values()) / len(fs["rss_end"])
    rows = [
        "| figure | goal | figserve | Flask dev server (threaded) | Gunicorn gthread | goal |",
        "|---|---|---|---|---|---|",
        f"| `/fig/5_3`, 6 clients: throughput (ratio to raw limit{rng}) | ≥ 0.95 "
        f"| {_ratio_cell(fs['throughput'][6])} | {_ratio_cell(fd[6])} | {_ratio_cell(gu[6])} "
        f"| {ok['/fig/5_3 at 6 clients / raw limit']} |",
        f"| `/fig/5_3`, 12 clients: throughput (ratio to raw limit) | ≥ 0.95 "
        f"| {_ratio_cell(fs['throughput'][12])} | {_ratio_cell(fd[12])} | {_ratio_cell(gu[12])} "
        f"| {ok['/fig/5_3 at 12 clients / raw limit']} |",
        f"| errors under image load (socket errors + non-2xx; then 24 images fetched 12 at a "
        f"time and decoded) | counted "
        f"| {errors({**fs['throughput'], 'page': fs['page'], 'valid': fs['valid']})} "
        f"| {errors(fd)} | {errors(gu)} | |",
        f"| `/normal/5_3` page p50 / p99 ms while 12 clients saturate images | p99 ≤ 25 ms "
        f"| {page(fs)} (idle: {fs['page_idle']['p50_ms']:.1f} / {fs['page_idle']['p99_ms']:.1f}) "
        f"| {page(fd)} | {page(gu)} | {ok['page p99 under image load (ms)']} |",
        f"| seeded cached image requests/s per worker | ≥ 3,000 | {r['cached']['rps']:,.0f} "
        f"(range {r['cached']['min']:,.0f}-{r['cached']['max']:,.0f}; wrk used "
        f"{wrk_cpu:.0%} of a core) | no cache | no cache "
        f"| {ok['cached requests/s per worker']} |",
        f"| CPU per image at the seed's 1200x900 PNG, ratio to the pyplot reference | ≤ 0.6x "
        f"| {cpu3['cpu_ms']['figserve']:.1f} ms, {cpu3['bytes']['figserve'] / 1000:.0f} kB "
        f"({g['CPU per 1200x900 PNG / pyplot']['value']:.2f}x) "
        f"| {cpu3['cpu_ms']['pyplot']:.1f} ms, {cpu3['bytes']['pyplot'] / 1000:.0f} kB (pyplot) "
        f"| same code | {ok['CPU per 1200x900 PNG / pyplot']} |",
        f"| 12-image page in headless Chromium, navigation start to every image loaded "
        f"(ratio to 12 x {cpu1['cpu_ms']['figserve']:.1f} ms CPU / {r['machine']['cores']} cores "
        f"= {ideal:.0f} ms) | ≤ 1.15 | {b['median_ms']:.0f} ms ({b['median_ms'] / ideal:.2f}; "
        f"range {b['min_ms']:.0f}-{b['max_ms']:.0f} ms over {b['loads']} loads; "
        f"{b['median_ms'] / wall_ideal:.2f} against 12 images at this run's raw limit) | | "
        f"| {ok['12-image page / (12 x CPU / cores)']} |",
        f"| RSS per worker, after warm-up → after {fs['renders']:,} renders (growth per 1,000) "
        f"| < 5 MB | {warm:.0f} → {end:.0f} MB ({growth:+.2f} MB) | | "
        f"| {ok['RSS growth per 1,000 renders (MB)']} |",
    ]
    clean = [
        run["server_cpu_ms_per_ok"]
        for c in (6, 12)
        for run in fs["throughput"][c]["runs"]
        if run["errors"] == 0
    ]
    clean_cpu = f"{sorted(clean)[len(clean) // 2]:.1f}" if clean else "n/a"
    raw_line = (
        f"Raw limit (figserve's draw + encode, one process per core, no HTTP): "
        f"{min(raw_fps):.1f}-{max(raw_fps):.1f} fig/s over {len(raw_fps)} runs alternating with "
        f"the figserve runs; pyplot reference: {r['raw_pyplot']['fps']:.1f} fig/s. "
        f"Server CPU per image served (figserve runs without errors): {clean_cpu} ms; one "
        f"render without HTTP: {cpu1['cpu_ms']['figserve']:.1f} ms."
    )
    splits = "; ".join(
        f"{c} clients: "
        + ", ".join(
            "/".join(str(n) for n in run.get("split", [])) or "-"
            for run in fs["throughput"][c]["runs"]
        )
        for c in (6, 12)
    )
    with_browser = (cpu1["cpu_ms"]["figserve"] * 12 + b["browser_cpu_ms"]) / r["machine"]["cores"]
    notes = (
        f"Image responses per worker process in each figserve run ({splits}): workers share one "
        f"listening socket and a worker takes every connection pending when it wakes, so the "
        f"clients' connections often land on one worker; past its render queue limit it answers "
        f"503 at once and wrk retries at once, which is where the non-2xx count comes from. "
        f"Chromium itself used {b['browser_cpu_ms']:.0f} ms CPU per page load on the same cores: "
        f"counting it, the 12-image page's ideal is {with_browser:.0f} ms and the ratio "
        f"{b['median_ms'] / with_browser:.2f}."
    )
    return "\n".join(rows) + "\n\n" + raw_line + "\n\n" + notes + "\n"


def write_report(r: dict[str, Any], out: Path) -> None:
    m = r["machine"]
    hc = r["hypercorn"]
    st = r["settings"]
    md = [
        "# figserve benchmark",
        "",
        f"{m['date']}: {m['cores']} cores, Python {m['python']}, matplotlib {m['matplotlib']}; "
        f"load average at start {m['load_average_at_start'][0]:.1f} (shared machine). "
        f"`bash bench/run`{' --quick' if r['quick'] else ''}: {r['seconds']:.0f} s.",
        "",
        f"figserve: `hypercorn --config hypercorn.toml src.app:app` — workers "
        f"{hc.get('workers')}, worker_class {hc.get('worker_class')}, render_threads "
        f"{st.get('render_threads')}, png_compress_level {st.get('png_compress_level')}, "
        f"render_queue_limit {st.get('render_queue_limit')}. Flask reference: "
        f"`bench/flask_ref.py` (pyplot + savefig to BytesIO) at the same 400x300 pixels "
        f"(`?dpi=100`), Flask dev server `threaded=True` and Gunicorn `-k gthread -w "
        f"{m['cores']} --threads 4`. Load: {m['wrk']}, {r['wrk']['threads']} threads, "
        f"closed loop, {r['wrk']['duration_s']:g} s per run, timeout {r['wrk']['timeout_s']} s; "
        f"page latency from one paced prober ({r['wrk']['page_probe']}).",
        "",
        table(r),
        "![benchmark chart](chart.png)",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    chart(r, out / "chart.png")


def chart(r: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_tp, ax_page), (ax_cpu, ax_goals) = fig.subplots(2, 2)
    colors = {"figserve": "#4c72b0", "flask_dev": "#dd8452", "gunicorn": "#c44e52"}

    # Throughput against the raw limit.
    width = 0.38
    raw_mean = sum(r["figserve"]["throughput"]["raw_fps"]) / len(
        r["figserve"]["throughput"]["raw_fps"]
    )
    for i, (key, _) in enumerate(SERVERS):
        t = r[key]["throughput"] if key == "figserve" else r[key]
        for j, clients in enumerate((6, 12)):
            x = i + (j - 0.5) * width
            bar = ax_tp.bar(
                x,
                t[clients]["ok_rps"],
                width * 0.95,
                color=colors[key],
                alpha=1.0 if clients == 6 else 0.6,
                label=f"{clients} clients" if i == 0 else None,
            )
            ax_tp.bar_label(bar, [f"{clients}c\n{t[clients]['ratio']:.2f}"], fontsize=8)
    ax_tp.axhline(raw_mean, color="black", ls="--", lw=1)
    ax_tp.text(-0.45, raw_mean, "raw limit", va="bottom", ha="left", fontsize=8)
    ax_tp.axhline(0.95 * raw_mean, color="green", ls=":", lw=1)
    ax_tp.axhline(r["raw_pyplot"]["fps"], color=colors["flask_dev"], ls="--", lw=1)
    ax_tp.text(
        -0.45, r["raw_pyplot"]["fps"], "pyplot raw limit", va="bottom", ha="left", fontsize=8
    )
    ax_tp.set_xticks(range(len(SERVERS)), [label for _, label in SERVERS])
    ax_tp.set_ylabel("400x300 PNGs per second")
    ax_tp.set_title("/fig/5_3 throughput; label: ratio to raw limit (goal ≥ 0.95)", fontsize=10)
    ax_tp.set_ylim(0, max(raw_mean, r["raw_pyplot"]["fps"]) * 1.35)

    # Page latency under image load.
    for i, (key, _) in enumerate(SERVERS):
        p = r[key]["page"]["page"]
        bars = ax_page.bar(
            [i - 0.2, i + 0.2], [p["p50_ms"], p["p99_ms"]], 0.38, color=colors[key], alpha=0.9
        )
        ax_page.bar_label(bars, [f"p50\n{p['p50_ms']:.0f}", f"p99\n{p['p99_ms']:.0f}"], fontsize=8)
    ax_page.axhline(25, color="green", ls=":", lw=1)
    ax_page.text(2.45, 25, "goal p99 25 ms", va="bottom", ha="right", fontsize=8)
    ax_page.set_yscale("log")
    ax_page.set_ylim(top=2 * max(r[k]["page"]["page"]["p99_ms"] for k, _ in SERVERS))
    ax_page.set_xticks(range(len(SERVERS)), [label for _, label in SERVERS])
    ax_page.set_ylabel("ms (log scale)")
    ax_page.set_title("/normal/5_3 latency while 12 clients load images", fontsize=10)

    # CPU per image.
    sizes = [(1, "400x300"), (3, "1200x900 (seed's size)")]
    for i, (dpr, _) in enumerate(sizes):
        c = r["cpu"][dpr]["cpu_ms"]
        bars = ax_cpu.bar(
            [i - 0.2, i + 0.2],
            [c["figserve"], c["pyplot"]],
            0.38,
            color=[colors["figserve"], colors["flask_dev"]],
        )
        ax_cpu.bar_label(
            bars,
            [
                f"{c['figserve']:.1f} ms\n{c['figserve'] / c['pyplot']:.2f}x",
                f"{c['pyplot']:.1f} ms",
            ],
            fontsize=8,
        )
    ax_cpu.set_xticks(range(len(sizes)), [label for _, label in sizes])
    ax_cpu.set_ylabel("CPU ms per image (median)")
    ax_cpu.set_title("CPU per PNG: figserve (blue), pyplot (orange); goal ≤ 0.6x", fontsize=10)
    ax_cpu.set_ylim(0, max(r["cpu"][3]["cpu_ms"].values()) * 1.3)

    # Every goal as measured / goal, oriented so that below 1 is met.
    gs = goals(r)
    scores = [(g["goal"] / g["value"] if g["higher"] else g["value"] / g["goal"]) for g in gs]
    ys = range(len(gs))
    bars = ax_goals.barh(ys, scores, color=["#55a868" if met(g) else "#c44e52" for g in gs])
    ax_goals.bar_label(bars, [g["fmt"].format(g["value"]) for g in gs], fontsize=8, padding=2)
    ax_goals.axvline(1, color="black", lw=1)
    ax_goals.set_yticks(ys, [g["name"] for g in gs], fontsize=8)
    ax_goals.invert_yaxis()
    ax_goals.set_xscale("log")
    ax_goals.set_xlabel("distance from goal (< 1 met; log scale); label: measured value")
    ax_goals.set_title("Goals: green met, red not met", fontsize=10)
    fig.suptitle(f"figserve benchmark, {r['machine']['date']}", fontsize=11)
    fig.savefig(path, dpi=100)


AB_TITLES = {
    "layouts": "Worker and thread layouts",
    "queue": "Render queue limit per worker",
}


def write_ab(results: dict[str, Any], out: Path) -> None:
    name = results["name"]
    (out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str))
    m = results["machine"]

    def cell(values: list[float], digits: int = 2) -> str:
        med = sorted(values)[len(values) // 2]
        return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    lines = [
        f"# {AB_TITLES[name]}, alternated (median and range over rounds)",
        "",
        f"{m['date']}; {m['cores']} cores; load average at start "
        f"{m['load_average_at_start'][0]:.1f}. Run: `python -m bench --{name}` "
        f"({results['seconds']:.0f} s).",
        "",
        "| configuration | 6 clients / raw | 12 clients / raw | errors | page p99 ms under load "
        "| 12-image page / ideal | cached req/s (server) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for config, runs in results["runs"].items():
        lines.append(
            f"| {config} | {cell([r['c6_ratio'] for r in runs])} "
            f"| {cell([r['c12_ratio'] for r in runs])} | {sum(r['errors'] for r in runs)} "
            f"| {cell([r['page_p99_ms'] for r in runs], 1)} "
            f"| {cell([r['browser_ratio'] for r in runs])} "
            f"| {cell([r['cached_rps'] for r in runs], 0)} |"
        )
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
