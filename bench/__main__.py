"""figserve's benchmark: ``bash bench/run`` (or ``python -m bench``) from the repository root.

    python -m bench              # the full run: results/results.md, results.json, chart.png
    python -m bench --quick      # the same, shorter and fewer renders (a smoke test, ~2 min)
    python -m bench --levers     # each speed lever side by side: results/levers.md
    python -m bench --profile    # where a live worker's time goes (py-spy): results/profile.md
    python -m bench --layouts    # workers x render threads, alternated: results/layouts.md
    python -m bench --queue      # render queue limit per worker, alternated: results/queue.md

Everything is on 127.0.0.1, every load has a fixed duration and every server is stopped at the
end, also when the run is interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from . import harness


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM (e.g. from the time limit in bench/run) unwinds like Ctrl-C: servers get stopped.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short smoke run")
    mode.add_argument("--levers", action="store_true", help="measure each speed lever")
    mode.add_argument("--profile", action="store_true", help="py-spy a worker under load")
    mode.add_argument("--layouts", action="store_true", help="worker/thread layouts, alternated")
    mode.add_argument("--queue", action="store_true", help="render queue limits, alternated")
    parser.add_argument("--out", type=Path, default=harness.RESULTS, help="results directory")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if args.layouts or args.queue:
        from .levers import run_ab

        run_ab(args.out, "layouts" if args.layouts else "queue")
    elif args.profile:
        from .profile import run_profile

        run_profile(args.out)
    elif args.levers:
        from .levers import run_levers

        run_levers(args.out)
    else:
        from .report import write_report
        from .run import run_all

        results = run_all(quick=args.quick)
        # A smoke run must not replace the published results.
        out = args.out / "quick" if args.quick else args.out
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
        write_report(results, out)
    print(f"done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
