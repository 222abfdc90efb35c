"""The default run's results as Markdown (``results.md``) and a chart (``chart.png``, matplotlib's
object API, no pyplot); the records themselves go to ``results.json``."""

from __future__ import annotations

from pathlib import Path

from .main import FigserveStart, Goal, MainResult, ReferenceStart
from .measure import ThroughputRun
from .procs import MemorySnapshot
from .stats import Spread, median, write_json

SERVERS = (("figserve", "figserve"), ("flask_dev", "Flask dev (threaded)"),
           ("gunicorn", "Gunicorn gthread"))  # fmt: skip


def goal_target(g: Goal) -> str:
    op = "≥" if g.higher_is_better else "≤"
    return f"{g.judged_by} {op} {g.target:,.{g.digits}f}{g.unit}"


def met_cell(g: Goal | None) -> str:
    if g is None or g.met is None:
        return "not measured"
    return "met" if g.met else "**not met**"


def memory_table(warm: MemorySnapshot, end: MemorySnapshot) -> list[str]:
    """Per kind of process: count, RSS, PSS and USS, after warm-up and after N renders."""

    def mb(v: float | None) -> str:
        return "n/a" if v is None else f"{v:,.0f}"

    before = {k.kind: k for k in warm.by_kind()}
    rows = [
        f"| process kind | count | RSS MB (sum, largest) | PSS MB | USS MB "
        f"| after {end.renders:,} renders: count, RSS sum, PSS, USS |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for k in end.by_kind():
        w = before.get(k.kind)
        first = (
            f"{w.count} | {w.rss_mb:,.0f} ({w.rss_max_mb:,.0f}) | {mb(w.pss_mb)} | {mb(w.uss_mb)}"
            if w
            else "0 | | |"
        )
        rows.append(
            f"| {k.kind} | {first} | {k.count}, {k.rss_mb:,.0f}, {mb(k.pss_mb)}, {mb(k.uss_mb)} |"
        )
    rows.append(
        f"| **total** | {len(warm.processes)} | {warm.rss_total_mb:,.0f} | "
        f"{mb(warm.pss_total_mb)} | | {len(end.processes)}, {end.rss_total_mb:,.0f}, "
        f"{mb(end.pss_total_mb)} |"
    )
    return rows


def _ref(refs: list[ReferenceStart], clients: int) -> Spread:
    return Spread.of([t.ratio for s in refs for t in s.throughput if t.clients == clients])


def table(r: MainResult) -> str:
    s = r.summary
    assert s is not None
    goals: dict[tuple[str, str], Goal] = {(g.name, g.judged_by): g for g in s.goals}

    def goal(name: str, by: str = "median") -> Goal | None:
        return goals.get((name, by))

    def row(label: str, name: str, figserve: str, fd: str = "", gu: str = "") -> str:
        gs = [g for (n, _), g in goals.items() if n == name]
        target = "; ".join(goal_target(g) for g in gs) or "counted"
        met = "; ".join(met_cell(g) for g in gs) if gs else ""
        return f"| {label} | {target} | {figserve} | {fd} | {gu} | {met} |"

    n = len(r.figserve)
    probe_workers = ", ".join("?" if w is None else str(w) for w in s.probe_workers)
    source = next((x.probe.workers_source for x in r.figserve if x.probe.workers_source), None)
    lines = [
        f"Every figserve figure: median (min-max) over {n} fresh server starts; "
        f"Flask: over {len(r.flask_dev)} and {len(r.gunicorn)} starts. Ideal page time = 12 x "
        f"{s.one_render_ms:.1f} ms (one render's CPU in this run's raw-limit runs) / "
        f"{r.machine.cores} cores = {s.ideal_page_ms:.0f} ms.",
        "",
        "| measurement | goal | figserve | Flask dev server (threaded) | Gunicorn gthread | |",
        "|---|---|---|---|---|---|",
        row(
            "12 unseeded images over 6 keep-alive connections opened together (browser-like "
            f"probe, {r.plan.probe_loads} loads per start): median load / ideal",
            "12 images over 6 connections (probe) / ideal",
            f"{s.probe_ratio.fmt()}; slowest load {s.probe_ratio_worst:.2f}",
        ),
        row(
            "12-image page in headless Chromium, navigation start to every image loaded / ideal",
            "12-image page in Chromium / ideal",
            s.chromium_ratio.fmt(),
        ),
    ]
    for c in sorted(s.throughput["figserve"]):
        lines.append(
            row(
                f"`/fig/5_3` throughput at {c} clients / raw limit",
                f"/fig/5_3 at {c} clients / raw limit",
                s.throughput["figserve"][c].fmt(),
                _ref(r.flask_dev, c).fmt(),
                _ref(r.gunicorn, c).fmt(),
            )
        )
    lines += [
        row(
            "`/normal/5_3` p99 while 12 clients saturate images (one visitor every 50 ms)",
            "/normal/5_3 p99 under image load",
            s.page_p99_ms["figserve"].fmt(1, " ms"),
            s.page_p99_ms["flask_dev"].fmt(1, " ms"),
            s.page_p99_ms["gunicorn"].fmt(1, " ms"),
        ),
        row(
            f"`/healthz` p99 while {r.figserve[0].overload.clients if r.figserve else '?'} "
            f"clients (10x the render capacity of {r.layout.capacity}) ask for images",
            "/healthz p99 at 10x overload",
            s.health_p99_ms.fmt(1, " ms"),
        ),
        row(
            "seeded (cached) image requests/s, one worker",
            "cached requests/s per worker",
            s.cached_rps_per_worker.fmt(0),
            "no cache",
            "no cache",
        ),
        row(
            "CPU per image at the seed's 1200x900 PNG / the pyplot reference",
            "CPU per 1200x900 PNG / pyplot",
            _cpu_cell(r),
            "pyplot",
            "same code",
        ),
        row(
            "server memory (PSS of every process) growth per 1,000 renders after warm-up; "
            "a first look, `--soak` measures it over 10,000",
            "server memory growth per 1,000 renders",
            s.memory_growth_mb_per_1000.fmt(2, " MB"),
        ),
        row(
            "errors under image load (socket errors + non-2xx), and 24 images fetched 12 at a "
            "time and decoded",
            "errors",
            _errors(r.figserve),
            _errors(r.flask_dev),
            _errors(r.gunicorn),
        ),
    ]
    notes = [
        "",
        f"Workers that answered each probe load (from the {source or 'nothing: not known'}): "
        f"{probe_workers}.",
    ]
    for x in r.figserve:
        split = "; ".join(
            f"{t.clients} clients: {'/'.join(map(str, t.by_worker)) or '-'}" for t in x.throughput
        )
        parts = [
            f"Start {x.index}: {x.workers} workers",
            f"image responses per worker ({split})",
            f"server CPU per image served {_cpu_per_ok(x.throughput)}",
        ]
        if x.chromium:
            parts.append(f"Chromium's own CPU per page load {x.chromium.browser_cpu_ms:.0f} ms")
        if x.stop:
            parts.append(
                f"stopped in {x.stop.seconds:.1f} s with exit code {x.stop.exit_code}, "
                f"{x.stop.leftovers} processes left behind"
            )
        notes.append(", ".join(parts) + ".")
    raws = [raw for x in [*r.figserve, *r.flask_dev, *r.gunicorn] for raw in x.raws]
    fps = Spread.of([raw.fps for raw in raws])
    pyplot = f"; pyplot reference: {r.raw_pyplot.fps:.1f} fig/s" if r.raw_pyplot else ""
    notes.append(
        f"Raw limit (figserve's draw + encode, one process per core, no HTTP): {fps.fmt(1)} "
        f"fig/s over {fps.n} runs bracketing the server runs{pyplot}."
    )
    if r.skipped:
        notes.append("Not run (time budget): " + "; ".join(r.skipped) + ".")
    if r.figserve:
        last = r.figserve[-1]
        notes += [
            "",
            f"### Memory of every process (start {last.index}), after warm-up "
            f"({last.memory_warm.renders:,} renders) and at the end",
            "",
            *memory_table(last.memory_warm, last.memory_end),
        ]
    return "\n".join(lines + notes) + "\n"


def _cpu_cell(r: MainResult) -> str:
    c = next((c for c in r.cpu if c.dpr == 3), None)
    if c is None:
        return "n/a"
    return (
        f"{c.figserve_ms:.1f} ms, {c.figserve_bytes / 1000:.0f} kB "
        f"({c.figserve_ms / c.pyplot_ms:.2f}x of {c.pyplot_ms:.1f} ms, "
        f"{c.pyplot_bytes / 1000:.0f} kB)"
    )


def _cpu_per_ok(runs: list[ThroughputRun]) -> str:
    clean = [t.server_cpu_ms_per_ok for t in runs if t.wrk.errors == 0]
    return f"{median(clean):.1f} ms" if clean else "n/a (errors)"


def _errors(starts: list[FigserveStart] | list[ReferenceStart]) -> str:
    if not starts:
        return ""
    runs = [w for s in starts for w in [*(t.wrk for t in s.throughput), s.page.load]]
    n = sum(w.errors for w in runs)
    total = sum(w.requests for w in runs)
    non2xx = sum(w.non2xx for w in runs)
    bad = sum(s.images.bad for s in starts)
    checked = sum(s.images.checked for s in starts)
    kinds = sorted({k for s in starts for k in s.images.kinds})
    more = f" ({', '.join(kinds)})" if kinds else ""
    return f"{n:,} of {total:,} ({non2xx:,} non-2xx); {bad} of {checked} images bad{more}"


def write(r: MainResult, out: Path, command: str) -> None:
    write_json(r, out / "results.json")
    hc, st = r.hypercorn, r.settings
    md = [
        "# figserve benchmark",
        "",
        r.machine.describe(command, r.seconds),
        "",
        f"figserve: `hypercorn --config hypercorn.toml src.app:app`, layout {r.layout} "
        f"(workers x render processes x render threads), worker_class "
        f"{hc.get('worker_class')}, settings {st}. Flask reference: `bench/flask_ref.py` "
        "(pyplot + savefig to BytesIO) at the same 400x300 pixels (`?dpi=100`), Flask's dev "
        f"server `threaded=True` and Gunicorn `-k gthread -w {r.machine.cores} --threads 4`. "
        f"Load: wrk, closed loop, {r.plan.seconds:g} s per run; raw-limit runs "
        f"{r.plan.raw_seconds:g} s.",
        "",
        table(r),
        "![benchmark chart](chart.png)",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    chart(r, out / "chart.png")


def chart(r: MainResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = r.summary
    assert s is not None
    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_ratio, ax_goals = fig.subplots(1, 2)
    colors = {"figserve": "#4c72b0", "flask_dev": "#dd8452", "gunicorn": "#c44e52"}

    # Each start's throughput ratio, per server and client count: the spread is visible.
    ticks = []
    top = 1.1
    for i, (key, label) in enumerate(SERVERS):
        starts = r.figserve if key == "figserve" else getattr(r, key)
        for j, clients in enumerate((6, 12)):
            x = i * 2.5 + j
            ticks.append((x, f"{label.split(' ')[0]}\n{clients} clients"))
            ys = [t.ratio for st in starts for t in st.throughput if t.clients == clients]
            ax_ratio.scatter([x] * len(ys), ys, color=colors[key], zorder=3)
            top = max([top, *(y + 0.05 for y in ys)])
    ax_ratio.axhline(0.95, color="green", ls=":", lw=1)
    ax_ratio.axhline(0.9, color="orange", ls=":", lw=1)
    ax_ratio.set_xticks([t for t, _ in ticks], [lbl for _, lbl in ticks], fontsize=7)
    ax_ratio.set_ylim(0, top)
    ax_ratio.set_ylabel("/fig/5_3 throughput / raw limit")
    ax_ratio.set_title("Throughput per fresh start (goals: min 0.9, median 0.95)", fontsize=10)

    # Every goal as distance from its target, oriented so that below 1 is met.
    gs = [g for g in s.goals if g.met is not None and g.value > 0]
    scores = [g.target / g.value if g.higher_is_better else g.value / g.target for g in gs]
    ys_ = range(len(gs))
    bars = ax_goals.barh(ys_, scores, color=["#55a868" if g.met else "#c44e52" for g in gs])
    ax_goals.bar_label(
        bars, [f"{g.value:,.{g.digits}f}{g.unit}" for g in gs], fontsize=8, padding=2
    )
    ax_goals.axvline(1, color="black", lw=1)
    ax_goals.set_yticks(list(ys_), [f"{g.name} ({g.judged_by})" for g in gs], fontsize=8)
    ax_goals.invert_yaxis()
    ax_goals.set_xscale("log")
    ax_goals.set_xlabel("distance from goal (< 1 met; log scale); label: measured value")
    ax_goals.set_title("Goals: green met, red not met", fontsize=10)
    fig.suptitle(f"figserve benchmark, {r.machine.date}", fontsize=11)
    fig.savefig(path, dpi=100)
