"""Where a live worker's time goes: ``python -m bench --profile`` (py-spy, sampling).

Starts figserve with one worker, puts it under load (image renders, then cached requests) and
samples the worker and its child processes (render processes, if it has any) with py-spy for the
length of each load. Writes ``profile.md``: for each load, the functions with the most samples on
the stack (inclusive) and at the top of the stack (exclusive), over all threads and processes,
idle time left out.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import server
from .load import WrkResult, wrk
from .measure import FIG, SEEDED, say
from .stats import write_json

LOADS = (
    ("image renders: /fig/5_3, 6 clients", FIG, 6),
    ("cached: /fig/5_3?seed=1, 8 clients", SEEDED, 8),
)
_PROCESS = re.compile(r'^process \d+:"(?:[^"\\]|\\.)*";')
# Frames where a thread waits rather than works.
_IDLE = ("select (selectors", "_worker (concurrent", "wait (threading", "poll (selectors")


@dataclass(frozen=True)
class Section:
    title: str
    load: WrkResult
    samples: int
    inclusive: list[tuple[str, float]] = field(default_factory=list)
    exclusive: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ProfileResult:
    seconds_per_load: float
    sections: list[Section] = field(default_factory=list)


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"  # installed into the venv by the bench extra
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


def _record(pid: int, seconds: float, path: Path) -> None:
    subprocess.run(
        [_py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds)),
         "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking",
         "--subprocesses"],
        capture_output=True, check=True, timeout=seconds + 60,
    )  # fmt: skip


def _where(frame: str) -> str:
    if " (" not in frame:
        return ""
    location = frame.split(" (", 1)[1].rstrip(")")
    for marker in ("site-packages/", "python3.11/", "/src/"):
        if marker in location:
            location = location.split(marker, 1)[1]
            break
    return f" ({location.rsplit(':', 1)[0]})"


def _summarise(title: str, load: WrkResult, path: Path, top: int = 20) -> Section:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    # Split on newlines only: a garbled sample (--nonblocking reads a running process) may hold
    # characters that str.splitlines would take for line ends.
    for line in path.read_text(errors="replace").split("\n"):
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        # The process (its command line may hold ";") and the thread come first; then code.
        stack = _PROCESS.sub("", stack)
        code = [f for f in stack.split(";") if not f.startswith("thread (")]
        frames = [f.split(" (")[0] + _where(f) for f in code]
        if not frames or any(idle in frames[-1] for idle in _IDLE):
            continue
        n = int(count)
        total += n
        exclusive[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    share = max(1, total)
    return Section(
        title,
        load,
        total,
        [(f, n / share) for f, n in inclusive.most_common(top)],
        [(f, n / share) for f, n in exclusive.most_common(top)],
    )


def run(out: Path, seconds: float) -> ProfileResult:
    _py_spy()
    result = ProfileResult(seconds)
    log_dir = out / "raw"
    srv = server.figserve("profile", log_dir, workers=1)
    with srv:
        (pid,) = srv.workers()
        wrk(srv.url + FIG, 12, 2)
        wrk(srv.url + SEEDED, 1, 1)
        for title, path, clients in LOADS:
            say(f"profile: {title}")
            raw_path = log_dir / f"profile-{clients}.txt"
            spy = threading.Thread(target=_record, args=(pid, seconds, raw_path))
            spy.start()
            load = wrk(srv.url + path, clients, seconds + 1, threads=1)
            spy.join()
            result.sections.append(_summarise(title, load, raw_path))
    return result


ROOT = str(Path(__file__).resolve().parent.parent)


def write(r: ProfileResult, out: Path, command: str) -> None:
    write_json(r, out / "profile.json")
    # Frames name the checkout's folder; the results speak of the repository only.
    json_path = out / "profile.json"
    json_path.write_text(json_path.read_text().replace(ROOT, "."))
    lines = [
        "# Where a worker's time goes (py-spy, 200 samples/s, all threads, idle left out)",
        "",
        f"`{command}`: one worker and its child processes, loads from wrk.",
        "",
    ]
    for s in r.sections:
        lines += [
            f"## {s.title}: {s.load.ok_rps:,.0f} responses/s, {s.samples:,} samples",
            "",
            "| function (inclusive) | share | function (exclusive) | share |",
            "|---|---:|---|---:|",
        ]
        for (fi, si), (fe, se) in zip(s.inclusive, s.exclusive, strict=False):
            lines.append(f"| `{fi}` | {si:.0%} | `{fe}` | {se:.0%} |")
        lines.append("")
    (out / "profile.md").write_text("\n".join(lines).replace(ROOT, "."))
