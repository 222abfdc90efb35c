"""``--wire``: cached images at wire speed, and renders against the plain matplotlib loop.

Two ratios, each over several fresh server starts (min and median), in one run:

- **cached image requests/s of one figserve worker / bare Hypercorn**: the same seeded image URL
  under the same load (wrk, loopback, one connection set), figserve with one worker as shipped
  against Hypercorn with the same configuration serving the same bytes and headers from an ASGI
  app of a few lines (``bare_asgi.py``); starts alternate, so machine noise hits both alike. Goal
  >= 0.7. figserve's 304s (``If-None-Match``) are measured too, for reference.
- **``/fig/5_3`` at 400x300 over HTTP / a plain matplotlib loop of the seed's figure on all
  cores** (``Figure()``, ``subplots``, ``scatter``, ``savefig`` PNG, one process per core, no
  HTTP), each HTTP run bracketed by loop runs. Goal >= 1.5.
"""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import server as servers
from .load import WrkResult, wrk
from .measure import FIG, SEEDED, Budget, say
from .procs import CORES
from .raw import RawLimit, RawRun
from .server import HOST, Server, free_port
from .stats import Spread, write_json

CACHED_CONNECTIONS = 8
FIG_CLIENTS = 12
WIRE_GOAL = 0.7
RENDER_GOAL = 1.5
_NOT_STORED = frozenset({"date", "server", "connection", "keep-alive", "transfer-encoding"})


@dataclass(frozen=True)
class Plan:
    starts: int = 3
    seconds: float = 5.0  # each cached-image load
    fig_seconds: float = 5.0  # each /fig/5_3 load
    raw_seconds: float = 4.0  # each plain-loop run

    @classmethod
    def quick(cls) -> Plan:
        return cls(starts=2, seconds=2.0, fig_seconds=2.0, raw_seconds=2.0)


@dataclass
class Start:
    index: int
    figserve: WrkResult
    not_modified: WrkResult
    bare: WrkResult
    fig: WrkResult
    raws: list[RawRun]
    wire_ratio: float
    render_ratio: float
    # Server CPU (every process of it) per answered request: steadier than requests/s on a
    # shared machine, and what the ratio of requests/s comes to when the server is the limit.
    figserve_cpu_us: float
    bare_cpu_us: float


@dataclass
class WireResult:
    plan: Plan
    cores: int
    starts: list[Start] = field(default_factory=list)

    @property
    def wire(self) -> Spread:
        return Spread.of([s.wire_ratio for s in self.starts])

    @property
    def cpu(self) -> Spread:
        """Bare Hypercorn's CPU per request / figserve's: the same ratio, by CPU."""
        return Spread.of([s.bare_cpu_us / s.figserve_cpu_us for s in self.starts])

    @property
    def render(self) -> Spread:
        return Spread.of([s.render_ratio for s in self.starts])


def _stored_response(url: str, folder: Path) -> Path:
    """figserve's answer to ``url`` as the bare app will send it: body and headers, less those
    Hypercorn adds itself and those about this connection."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
        headers = [(k.lower(), v) for k, v in resp.getheaders() if k.lower() not in _NOT_STORED]
    body_file = folder / "body"
    body_file.write_bytes(body)
    spec = folder / "response.json"
    spec.write_text(json.dumps({"headers": headers, "body_file": str(body_file)}))
    return spec


def _bare(name: str, log_dir: Path, response: Path) -> Server:
    port = free_port()
    cmd = [
        sys.executable, "-m", "hypercorn", "--config", "hypercorn.toml",
        "--bind", f"{HOST}:{port}", "--workers", "1", "bench.bare_asgi:app",
    ]  # fmt: skip
    return Server(
        name, cmd, port, log_dir, env={"BARE_RESPONSE": str(response)}, ready_text="Running on"
    )


def _etag(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.headers["ETag"]


def run(out: Path, plan: Plan, budget: Budget) -> WireResult:
    result = WireResult(plan, CORES)
    log_dir = out / "logs"
    folder = Path(tempfile.mkdtemp(prefix="figserve-bench-wire-"))
    with RawLimit() as limit:
        for i in range(plan.starts):
            if i and not budget.fits(
                4 * plan.seconds + plan.fig_seconds + 2 * plan.raw_seconds + 40
            ):
                say(f"wire: budget spent after {i} starts")
                break
            say(f"wire: start {i + 1}/{plan.starts}")
            with servers.figserve(f"wire-figserve-{i}", log_dir, workers=1) as fs:
                wrk(fs.url + SEEDED, 1, 1, threads=1)  # rendered once, then cached
                response = _stored_response(fs.url + SEEDED, folder)
                cpu0 = fs.cpu_seconds()
                cached = wrk(fs.url + SEEDED, CACHED_CONNECTIONS, plan.seconds, threads=1)
                fs_cpu = (fs.cpu_seconds() - cpu0) / max(1, cached.ok)
                tag = _etag(fs.url + SEEDED)
                not_modified = wrk(
                    fs.url + SEEDED,
                    CACHED_CONNECTIONS,
                    plan.seconds,
                    threads=1,
                    headers={"If-None-Match": tag},
                )
                before = limit.measure(plan.raw_seconds, kind="plain")
                fig = wrk(fs.url + FIG, FIG_CLIENTS, plan.fig_seconds)
                after = limit.measure(plan.raw_seconds, kind="plain")
            with _bare(f"wire-bare-{i}", log_dir, response) as bare:
                cpu0 = bare.cpu_seconds()
                bare_run = wrk(bare.url + SEEDED, CACHED_CONNECTIONS, plan.seconds, threads=1)
                bare_cpu = (bare.cpu_seconds() - cpu0) / max(1, bare_run.ok)
            plain_fps = (before.fps + after.fps) / 2
            result.starts.append(
                Start(
                    index=i,
                    figserve=cached,
                    not_modified=not_modified,
                    bare=bare_run,
                    fig=fig,
                    raws=[before, after],
                    wire_ratio=cached.ok_rps / bare_run.ok_rps,
                    render_ratio=fig.ok_rps / plain_fps,
                    figserve_cpu_us=fs_cpu * 1e6,
                    bare_cpu_us=bare_cpu * 1e6,
                )
            )
            say(
                f"wire: cached {cached.ok_rps:,.0f}/s, bare {bare_run.ok_rps:,.0f}/s "
                f"({cached.ok_rps / bare_run.ok_rps:.2f}; CPU/request {fs_cpu * 1e6:.0f} against "
                f"{bare_cpu * 1e6:.0f} us); /fig/5_3 {fig.ok_rps:.1f}/s, plain "
                f"loop {plain_fps:.1f}/s ({fig.ok_rps / plain_fps:.2f})"
            )
    return result


def write(result: WireResult, out: Path, command: str) -> None:
    write_json({"command": command, "result": result}, out / "wire.json")
    rows = [
        "| start | cached figserve req/s | bare Hypercorn req/s | ratio | CPU/request figserve, "
        "bare (us) | figserve 304/s | `/fig/5_3` req/s | plain loop fig/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result.starts:
        plain = (s.raws[0].fps + s.raws[1].fps) / 2
        rows.append(
            f"| {s.index + 1} | {s.figserve.ok_rps:,.0f} | {s.bare.ok_rps:,.0f} | "
            f"{s.wire_ratio:.2f} | {s.figserve_cpu_us:.0f}, {s.bare_cpu_us:.0f} | "
            f"{s.not_modified.ok_rps:,.0f} | {s.fig.ok_rps:.1f} | "
            f"{plain:.1f} | {s.render_ratio:.2f} |"
        )
    wire, cpu, render = result.wire, result.cpu, result.render
    lines = [
        "# Cached images at wire speed; renders against the plain loop",
        "",
        f"`{command}`, {result.cores} cores, {len(result.starts)} fresh starts of each server; "
        f"{CACHED_CONNECTIONS} connections for cached images, {FIG_CLIENTS} clients for "
        "`/fig/5_3`.",
        "",
        "| measure | min | median | goal |",
        "|---|---:|---:|---:|",
        f"| cached image requests/s, one worker / bare Hypercorn | {wire.min:.2f} | "
        f"{wire.median:.2f} | >= {WIRE_GOAL} |",
        f"| the same by CPU per request (bare / figserve) | {cpu.min:.2f} | {cpu.median:.2f} | |",
        f"| `/fig/5_3` 400x300 / plain matplotlib loop on all cores | {render.min:.2f} | "
        f"{render.median:.2f} | >= {RENDER_GOAL} |",
        "",
        *rows,
        "",
    ]
    (out / "wire.md").write_text("\n".join(lines))
