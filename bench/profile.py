"""Where a live worker's time goes: ``python -m bench --profile`` (py-spy, sampling).

Starts figserve with one worker, puts it under load (image renders, then cached requests) and
samples the worker with py-spy for the length of each load. Writes ``results/profile.md``: for
each load, the functions with the most samples on the stack (inclusive) and at the top of the
stack (exclusive), over all threads, idle time left out.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from . import harness, suite

LOADS = (
    ("image renders: /fig/5_3, 6 clients", suite.FIG, 6),
    ("cached: /fig/5_3?seed=1, 8 clients", suite.SEEDED, 8),
)


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"  # installed into the venv by the bench extra
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


def _record(pid: int, seconds: float, path: Path) -> None:
    subprocess.run(
        [_py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds)),
         "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking"],
        capture_output=True, check=True,
    )  # fmt: skip


def _summarise(path: Path, top: int = 20) -> dict[str, Any]:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(" (")[0] + _where(f) for f in stack.split(";")[1:]]  # [0]: thread
        if not frames or any(idle in frames[-1] for idle in _IDLE):
            continue
        n = int(count)
        total += n
        exclusive[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return {
        "samples": total,
        "inclusive": [(f, n / total) for f, n in inclusive.most_common(top)],
        "exclusive": [(f, n / total) for f, n in exclusive.most_common(top)],
    }


# Frames where a thread waits rather than works.
_IDLE = ("select (selectors", "_worker (concurrent", "wait (threading", "poll (selectors")


def _where(frame: str) -> str:
    if " (" not in frame:
        return ""
    location = frame.split(" (", 1)[1].rstrip(")")
    for marker in ("site-packages/", "python3.11/", "/src/"):
        if marker in location:
            location = location.split(marker, 1)[1]
            break
    return f" ({location.rsplit(':', 1)[0]})"


def run_profile(out: Path, seconds: float = 8) -> None:
    _py_spy()
    server = harness.figserve(name="profile", workers=1)
    sections = []
    try:
        (pid,) = server.worker_pids()
        harness.wrk(server.url + suite.FIG, 12, 2)
        harness.wrk(server.url + suite.SEEDED, 1, 1)
        for title, path, clients in LOADS:
            raw_path = harness.LOGS / f"profile-{clients}.txt"
            spy = threading.Thread(target=_record, args=(pid, seconds, raw_path))
            spy.start()
            load = harness.wrk(server.url + path, clients, seconds + 1, threads=1)
            spy.join()
            sections.append((title, load, _summarise(raw_path)))
    finally:
        server.stop()
    lines = [
        "# Where a worker's time goes (py-spy, 200 samples/s, all threads, idle left out)",
        "",
        "Run: `python -m bench --profile` (one worker, loads from wrk).",
        "",
    ]
    for title, load, s in sections:
        lines += [
            f"## {title}: {load['ok_rps']:,.0f} responses/s, {s['samples']:,} samples",
            "",
            "| function (inclusive) | share | function (exclusive) | share |",
            "|---|---:|---|---:|",
        ]
        for (fi, si), (fe, se) in zip(s["inclusive"], s["exclusive"], strict=False):
            lines.append(f"| `{fi}` | {si:.0%} | `{fe}` | {se:.0%} |")
        lines.append("")
    (out / "profile.md").write_text("\n".join(lines))
