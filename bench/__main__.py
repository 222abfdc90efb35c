"""figserve's benchmark: ``bash bench/run [options]`` (or ``python -m bench``) from the repository
root. One suite per run:

    python -m bench                        # the default run: results.md, results.json, chart.png
    python -m bench --layouts 1x2x2,2x2x4  # workers x render processes x threads: layouts.md
    python -m bench --levers               # settings the shipped app does not use: levers.md
    python -m bench --soak                 # 10,000 renders, memory, burst, overload: soak.md
    python -m bench --jobs                 # page latency with a report job running: jobs.md
    python -m bench --profile              # where a live worker's time goes (py-spy): profile.md
    python -m bench --scaleout             # 2 instances against 1 behind nginx, Redis: scaleout.md
    python -m bench --live                 # 100/1,000/5,000 live viewers on one worker: live.md
    python -m bench --wire                 # cached images / bare Hypercorn; renders / plain loop
    python -m bench --render               # CPU per image of each shipped figure: render.md

``--quick`` makes any suite a short smoke run that writes to ``results/quick/`` (git-ignored).
Everything is on 127.0.0.1, every load has a fixed duration, every server is stopped at the end
(also when the run is interrupted), and each suite keeps to a time budget (``--budget``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .server import ROOT, Layout

if TYPE_CHECKING:
    from .measure import Budget

RESULTS = ROOT / "bench" / "results"
MAX_BUDGET = 3600
GRACE = 120  # past the budget, a start under way may finish; then the run is interrupted
BUDGETS = {  # seconds: (full, --quick)
    "main": (480, 240),  # + a start under way + the pyplot raw limit: under 10 minutes
    "layouts": (540, 240),
    "levers": (540, 240),
    "soak": (480, 120),
    "jobs": (300, 120),
    "profile": (120, 60),
    "scaleout": (300, 120),
    "live": (540, 150),
    "wire": (240, 90),
    "render": (600, 180),
}


class _Interrupted(KeyboardInterrupt):
    """SIGTERM or the hard time limit: unwinds like Ctrl-C, so every server gets stopped."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _layouts(text: str) -> list[Layout]:
    try:
        layouts = [Layout.parse(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if not 1 <= len(layouts) <= 8:
        raise argparse.ArgumentTypeError("give 1-8 layouts, e.g. 1x2x2,2x2x4,4x1x1")
    return layouts


def _viewers(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if not 1 <= len(sizes) <= 5 or not all(1 <= n <= 5000 for n in sizes):
        raise argparse.ArgumentTypeError("give 1-5 numbers of viewers from 1 to 5000")
    return sizes


def _bounded(low: float, high: float, kind: type = float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g}-{high:g}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    suite = parser.add_mutually_exclusive_group()
    suite.add_argument(
        "--layouts", type=_layouts, metavar="WxPxT,...",
        help="sweep workers x render processes x render threads, alternated over fresh starts",
    )  # fmt: skip
    suite.add_argument("--levers", action="store_true", help="each lever against shipped")
    suite.add_argument("--soak", action="store_true", help="memory over 10,000 renders; overload")
    suite.add_argument("--jobs", action="store_true", help="page latency with a job running")
    suite.add_argument("--profile", action="store_true", help="py-spy a worker under load")
    suite.add_argument(
        "--scaleout", action="store_true", help="2 instances against 1 behind nginx, with Redis"
    )
    suite.add_argument(
        "--live", action="store_true", help="100/1,000/5,000 live page viewers on one worker"
    )
    suite.add_argument(
        "--wire", action="store_true", help="cached images against bare Hypercorn; /fig/5_3 "
        "against the plain matplotlib loop",
    )  # fmt: skip
    suite.add_argument(
        "--render", action="store_true",
        help="CPU per image of each shipped figure: fresh, update path, plain matplotlib",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="short smoke run into results/quick")
    parser.add_argument(
        "--starts", type=_bounded(1, 10, int),
        help="fresh server starts (rounds, for --layouts and --levers; processes for --render)",
    )  # fmt: skip
    parser.add_argument(
        "--seconds", type=_bounded(1, 60), help="seconds of each load (default per suite)"
    )
    parser.add_argument(
        "--budget", type=_bounded(30, MAX_BUDGET),
        help="seconds the suite may take; no server start begins past it",
    )  # fmt: skip
    parser.add_argument(
        "--viewers", type=_viewers, metavar="N,...",
        help="--live: the numbers of viewers to run (default 100,1000,5000)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)

    name = (
        "layouts" if args.layouts else
        "levers" if args.levers else
        "soak" if args.soak else
        "jobs" if args.jobs else
        "profile" if args.profile else
        "scaleout" if args.scaleout else
        "live" if args.live else
        "wire" if args.wire else
        "render" if args.render else
        "main"
    )  # fmt: skip
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    from .measure import Budget, say

    budget = Budget(args.budget or BUDGETS[name][1 if args.quick else 0])
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _interrupt)
    signal.alarm(int(budget.seconds + GRACE))
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.monotonic()
    try:
        _run(name, args, out, budget, command.strip())
    except _Interrupted as exc:
        say(f"interrupted ({exc}): servers stopped, no results written")
        return 1
    finally:
        signal.alarm(0)
    say(f"{name} done in {time.monotonic() - t0:.0f} s; results in {out}")
    return 0


def _run(name: str, args: argparse.Namespace, out: Path, budget: Budget, command: str) -> None:
    if name == "main":
        from . import main as suite
        from .report import write

        plan = suite.Plan.quick() if args.quick else suite.Plan()
        if args.starts:
            plan = replace(plan, starts=args.starts)
        if args.seconds:
            plan = replace(plan, seconds=args.seconds)
        write(suite.run(out, plan, budget, quick=args.quick), out, command)
    elif name in ("layouts", "levers"):
        from . import variants

        plan = variants.Plan.quick() if args.quick else variants.Plan()
        plan = replace(
            plan, rounds=args.starts or plan.rounds, seconds=args.seconds or plan.seconds
        )
        chosen = variants.from_layouts(args.layouts) if args.layouts else variants.levers()
        result = variants.run(name, chosen, out, plan, budget)
        variants.write(result, out, command)
    elif name == "soak":
        from . import soak

        plan = soak.Plan.quick() if args.quick else soak.Plan()
        result = soak.run(out, plan, budget)
        soak.write(result, out, command)
    elif name == "scaleout":
        from . import scaleout

        plan = scaleout.Plan.quick() if args.quick else scaleout.Plan()
        if args.starts:
            plan = replace(plan, starts=args.starts)
        if args.seconds:
            plan = replace(plan, seconds=args.seconds)
        scaleout.write(scaleout.run(out, plan, budget), out, command)
    elif name == "live":
        from . import live

        plan = live.Plan.quick() if args.quick else live.Plan()
        if args.viewers:
            plan = replace(plan, viewers=args.viewers)
        live.write(live.run(out, plan, budget), out, command)
    elif name == "wire":
        from . import wire

        plan = wire.Plan.quick() if args.quick else wire.Plan()
        if args.starts:
            plan = replace(plan, starts=args.starts)
        if args.seconds:
            plan = replace(plan, seconds=args.seconds, fig_seconds=args.seconds)
        wire.write(wire.run(out, plan, budget), out, command)
    elif name == "render":
        from . import render

        plan = render.Plan.quick() if args.quick else render.Plan()
        if args.starts:
            plan = replace(plan, starts=args.starts)
        render.write(render.run(out, plan, budget), out, command)
    elif name == "jobs":
        from . import jobs

        plan = jobs.Plan.quick() if args.quick else jobs.Plan()
        jobs.write(jobs.run(out, plan, budget), out, command)
    else:
        from . import profile

        seconds = args.seconds or (3.0 if args.quick else 8.0)
        profile.write(profile.run(out, seconds), out, command)


if __name__ == "__main__":
    sys.exit(main())
