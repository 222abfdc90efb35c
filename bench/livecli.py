"""The viewers of ``python -m bench --live``, in a process of their own (``bench.livecli``).

Each viewer holds one live stream (``GET /live/stream``, read over a raw asyncio socket) and one
keep-alive connection for images, as a browser tab does. For every data change it notes when it
was told the new pin and fetches the new image at once; then the same viewers poll the figures
every ``refresh`` seconds with URLs no cache can answer (as dashboards that re-run their
queries do). Prints one JSON record on standard output; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs
from .livefig import FIGURES_SHOWN, TickerParams, data_file

HOST = "127.0.0.1"
OPEN_AT_ONCE = 100  # connections being opened at once (the server's backlog is 100)
W, H = 400, 300


def image_path(i: int, pin: str | None = None, figure: str = "ticker") -> str:
    """The image URL as a page writes it (``figure("ticker", i=i, live=True)``)."""
    query = [("i", str(i)), ("w", str(W)), ("h", str(H))] + ([("_v", pin)] if pin else [])
    return f"/figures/{figure}.png?" + urllib.parse.urlencode(query)


def stream_path() -> str:
    targets = [("f", image_path(i)) for i in range(FIGURES_SHOWN)]
    return "/live/stream?" + urllib.parse.urlencode(targets)


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if value:
            headers[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    out = b""
    while (size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
        out += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return out


class Connection:
    """A keep-alive HTTP/1.1 connection for one request at a time; opened again if closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, method: str = "GET", body: bytes = b"",
                  headers: str = "") -> tuple[int, bytes]:  # fmt: skip
        for attempt in (1, 2):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(
                    f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{headers}"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status, head = await _head(self.reader)
                data = await _body(self.reader, head)
                if head.get("connection", "").lower() == "close":
                    self.close()
                return status, data
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()  # the server closed an idle connection: open a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


@dataclass
class Change:
    figure: int
    t0: float
    told: dict[int, float] = field(default_factory=dict)  # viewer -> seconds after t0
    fetched: dict[int, float] = field(default_factory=dict)
    failed: int = 0


class Viewer:
    def __init__(self, n: int, run: Run) -> None:
        self.n = n
        self.run = run
        self.pins: dict[int, str] = {}
        self.images = Connection(run.port)
        self.task: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.fetching = asyncio.Lock()

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_connection(HOST, self.run.port)
        self.writer.write(f"GET {stream_path()} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        status, _ = await _head(reader)
        if status != 200:
            raise RuntimeError(f"stream refused: {status}")
        self.task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while (size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)) > 0:
                buffer += (await reader.readexactly(size + 2))[:-2]
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self._event(block)

    def _event(self, block: bytes) -> None:
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if fields.get(b"event") != b"figure":
            return
        now = time.monotonic()
        for notice in json.loads(fields[b"data"])["figures"]:
            i = self.run.figure_of[notice["key"]]
            if self.pins.get(i) == notice["pin"]:
                continue
            self.pins[i] = notice["pin"]
            change = self.run.change
            if change is not None and change.figure == i and self.n not in change.told:
                change.told[self.n] = now - change.t0
                task = asyncio.create_task(self._fetch(change, i, notice["pin"]))
                self.run.fetches.add(task)
                task.add_done_callback(self.run.fetches.discard)

    async def _fetch(self, change: Change, i: int, pin: str) -> None:
        async with self.fetching:
            try:
                status, data = await self.images.get(image_path(i, pin))
            except (OSError, asyncio.IncompleteReadError):
                status, data = 0, b""
            if status == 200 and data[:4] == b"\x89PNG":
                change.fetched[self.n] = time.monotonic() - change.t0
            else:
                change.failed += 1

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
        self.images.close()


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.port = args.port
        self.change: Change | None = None
        self.fetches: set[asyncio.Task[None]] = set()
        from figserve.live.streams import live_key

        self.figure_of = {live_key("ticker", TickerParams(i=i)): i for i in range(FIGURES_SHOWN)}
        self.control = Connection(args.port)

    async def metrics(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        _, text = await self.control.get("/metrics")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text.decode()):
            for s in family.samples:
                if s.labels.get("figure", "ticker") in ("ticker", "ticker_polled"):
                    out[s.name] = out.get(s.name, 0.0) + s.value
        return out

    def memory_kb(self) -> dict[str, float]:
        worker = self.args.worker
        roll = procs._rollup_kb(worker)
        return {
            "rss": float(procs._status_kb(worker, "VmRSS") or 0),
            "uss": float(roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0)),
        }

    async def changed(self, i: int) -> None:
        body = json.dumps({"params": {"i": i}}).encode()
        status, data = await self.control.get(
            "/api/figures/ticker/changed", "POST", body,
            f"Authorization: Bearer {self.args.token}\r\nContent-Type: application/json\r\n",
        )  # fmt: skip
        if status != 200:
            raise RuntimeError(f"changed: {status} {data[:200]!r}")


def write_data(i: int, value: int) -> None:
    path = data_file(i)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


async def live_phase(run: Run) -> dict[str, Any]:
    args = run.args
    out: dict[str, Any] = {"viewers": args.viewers}
    before = run.memory_kb()
    viewers = [Viewer(n, run) for n in range(args.viewers)]
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    t0 = time.monotonic()

    async def open_one(v: Viewer) -> None:
        async with gate:
            await v.open()

    await asyncio.gather(*(open_one(v) for v in viewers))
    out["open_s"] = time.monotonic() - t0
    deadline = time.monotonic() + 60
    while not all(len(v.pins) == FIGURES_SHOWN for v in viewers):
        if time.monotonic() > deadline:
            raise RuntimeError("not every viewer got its first pins")
        await asyncio.sleep(0.05)
    out["first_pins_s"] = time.monotonic() - t0
    # Idle: what open streams cost, in memory and CPU (keep-alive comments only).
    await asyncio.sleep(2)
    cpu0 = procs.cpu_seconds(args.server)
    await asyncio.sleep(args.idle)
    out["idle_cpu_cores"] = (procs.cpu_seconds(args.server) - cpu0) / args.idle
    after = run.memory_kb()
    out["memory_kb_per_stream"] = {k: (after[k] - before[k]) / args.viewers for k in ("rss", "uss")}
    out["worker_memory_kb"] = {"before": before, "after": after}
    # Changes, one figure at a time, each announced by the "changed now" call.
    m0, cpu0, t_start = await run.metrics(), procs.cpu_seconds(args.server), time.monotonic()
    changes: list[Change] = []
    for c in range(args.changes):
        i = c % FIGURES_SHOWN
        change = Change(i, time.monotonic())
        run.change = change
        write_data(i, 1000 + c)
        await run.changed(i)
        limit = time.monotonic() + args.settle
        while len(change.fetched) + change.failed < args.viewers and time.monotonic() < limit:
            await asyncio.sleep(0.01)
        changes.append(change)
        run.change = None
        await asyncio.sleep(args.interval)
    m1, cpu1, seconds = await run.metrics(), procs.cpu_seconds(args.server), time.monotonic()
    seconds -= t_start
    out["renders_per_change"] = (
        m1.get("figserve_renders_started_total", 0) - m0.get("figserve_renders_started_total", 0)
    ) / args.changes
    out["renders_ahead_per_change"] = (
        m1.get("figserve_live_renders_ahead_total", 0)
        - m0.get("figserve_live_renders_ahead_total", 0)
    ) / args.changes
    out["change_cpu_cores"] = (cpu1 - cpu0) / seconds
    out["changes"] = [
        {"figure": ch.figure, "told": sorted(ch.told.values()),
         "fetched": sorted(ch.fetched.values()), "failed": ch.failed,
         "missed": args.viewers - len(ch.fetched) - ch.failed}
        for ch in changes
    ]  # fmt: skip
    for v in viewers:
        v.close()
    return out


async def poll_phase(run: Run) -> dict[str, Any]:
    """The same viewers asking for both figures every ``refresh`` seconds, drawn on every request
    (``ticker_polled``: no version, no cache), as dashboards that re-run their queries do."""
    args = run.args
    counts: dict[str, int] = {"ok": 0, "shed": 0, "other": 0}
    latencies: list[float] = []
    stop = time.monotonic() + args.poll

    async def viewer(n: int) -> None:
        conn = Connection(run.port)
        await asyncio.sleep(random.Random(n).uniform(0, args.refresh))
        try:
            while time.monotonic() < stop:
                started = time.monotonic()
                for i in range(FIGURES_SHOWN):
                    t = time.monotonic()
                    try:
                        status, _ = await conn.get(image_path(i, figure="ticker_polled"))
                    except (OSError, asyncio.IncompleteReadError):
                        status = 0
                    kind = "ok" if status == 200 else "shed" if status == 503 else "other"
                    counts[kind] += 1
                    if status == 200:
                        latencies.append(time.monotonic() - t)
                await asyncio.sleep(max(0.0, args.refresh - (time.monotonic() - started)))
        finally:
            conn.close()

    m0, cpu0, t0 = await run.metrics(), procs.cpu_seconds(args.server), time.monotonic()
    tasks = [asyncio.create_task(viewer(n)) for n in range(args.viewers)]
    await asyncio.wait(tasks, timeout=args.poll + 30)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    seconds = time.monotonic() - t0
    m1, cpu1 = await run.metrics(), procs.cpu_seconds(args.server)
    renders = m1.get("figserve_renders_started_total", 0) - m0.get(
        "figserve_renders_started_total", 0
    )
    return {
        "seconds": seconds,
        "offered_per_s": args.viewers * FIGURES_SHOWN / args.refresh,
        "polls": counts,
        "renders_per_s": renders / seconds,
        "cpu_cores": (cpu1 - cpu0) / seconds,
        "latencies": sorted(latencies),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    record = {"live": await live_phase(run)}
    await asyncio.sleep(2)  # the server lets the streams go
    if args.poll > 0:
        record["poll"] = await poll_phase(run)
    run.control.close()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.livecli")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", type=int, required=True, help="the server's master pid")
    parser.add_argument("--worker", type=int, required=True, help="its worker's pid")
    parser.add_argument("--token", required=True)
    parser.add_argument("--viewers", type=int, required=True)
    parser.add_argument("--changes", type=int, default=6)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between changes")
    parser.add_argument("--settle", type=float, default=15.0, help="most seconds per change")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle streams")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds of polling (0: none)")
    parser.add_argument("--refresh", type=float, default=1.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * args.viewers + 100:
        sys.exit(f"{args.viewers} viewers need {2 * args.viewers + 100} file descriptors")
    Path(os.environ["BENCH_LIVE_DIR"]).mkdir(exist_ok=True)
    json.dump(asyncio.run(main_async(args)), sys.stdout)


if __name__ == "__main__":
    main()
