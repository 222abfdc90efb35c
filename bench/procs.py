"""A server's processes read from ``/proc``: its process tree, what each process is, its memory
and CPU time. Linux only; every figure the benchmark gives per process comes from here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_TICK = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/<pid>/stat`` and ``cmdline`` describe it."""

    pid: int
    ppid: int
    pgrp: int
    state: str  # R, S, Z (zombie), ...
    comm: str
    cmdline: str
    cpu_s: float  # user + system, its own plus that of its children it has reaped


def read_proc(pid: int) -> Proc | None:
    """The process ``pid``, or None if it has gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
        cmdline = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()
    # f[0] is field 3 of proc(5): state, ppid, pgrp, ..., utime (14), stime, cutime, cstime (17)
    cpu = sum(int(x) for x in f[11:15]) / _TICK
    return Proc(
        pid=pid,
        ppid=int(f[1]),
        pgrp=int(f[2]),
        state=f[0],
        comm=comm,
        cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
        cpu_s=cpu,
    )


def _all() -> list[Proc]:
    procs = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (p := read_proc(int(entry.name))) is not None:
            procs.append(p)
    return procs


def tree(root: int) -> list[Proc]:
    """``root`` and all its descendants, parents before children."""
    procs = _all()
    children: dict[int, list[Proc]] = {}
    top = None
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
        if p.pid == root:
            top = p
    if top is None:
        return []
    out, stack = [], [top]
    while stack:
        p = stack.pop(0)
        out.append(p)
        stack.extend(sorted(children.get(p.pid, []), key=lambda c: c.pid))
    return out


def group_members(pgrp: int) -> list[Proc]:
    """Live (not zombie) processes of a process group."""
    return [p for p in _all() if p.pgrp == pgrp and p.state != "Z"]


def cpu_seconds(root: int) -> float:
    """CPU used so far by ``root``'s tree. Children that exited and were reaped stay counted
    through their parent's cutime/cstime, so the difference of two readings is the tree's work
    in between even when processes are replaced."""
    return sum(p.cpu_s for p in tree(root))


# --- what each process is ----------------------------------------------------------------------

MASTER = "master"
WORKER = "worker"
RESOURCE_TRACKER = "resource tracker"
FORK_SERVER = "fork server"
FORK_SERVER_CHILD = "fork-server child"
WORKER_CHILD = "worker child"
DEEPER = "worker descendant"


def kinds(procs: list[Proc]) -> dict[int, str]:
    """Each process of a server tree (as ``tree`` returns it) by its place and command line.

    Depth 1 are Hypercorn's workers (or Gunicorn's); below them, a multiprocessing fork server
    is recognised by its command line, and the processes it forks (which keep that command line)
    by their parent. Anything else below a worker is a plain child or descendant.
    """
    if not procs:
        return {}
    depth = {procs[0].pid: 0}
    kind = {procs[0].pid: MASTER}
    for p in procs[1:]:
        d = depth[p.pid] = depth.get(p.ppid, 0) + 1
        parent = kind.get(p.ppid)
        if "resource_tracker" in p.cmdline:
            kind[p.pid] = RESOURCE_TRACKER
        elif d == 1:
            kind[p.pid] = WORKER
        elif parent in (FORK_SERVER, FORK_SERVER_CHILD):
            kind[p.pid] = FORK_SERVER_CHILD
        elif "forkserver" in p.cmdline:
            kind[p.pid] = FORK_SERVER
        else:
            kind[p.pid] = WORKER_CHILD if d == 2 else DEEPER
    return kind


def worker_pids(master: int) -> list[int]:
    procs = tree(master)
    k = kinds(procs)
    return [p.pid for p in procs if k[p.pid] == WORKER]


# --- memory ------------------------------------------------------------------------------------


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rollup_kb(pid: int) -> dict[str, int]:
    """Pss and private memory from ``smaps_rollup`` (empty if it is not readable)."""
    out: dict[str, int] = {}
    try:
        text = (_PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Pss", "Private_Clean", "Private_Dirty") and rest.split():
            out[name] = int(rest.split()[0])
    return out


def rss_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    ppid: int
    kind: str
    comm: str
    state: str
    rss_mb: float | None
    # Proportional set size: shared pages divided among the processes sharing them, so the PSS
    # of all processes adds up to what the server really uses (forked processes share a lot).
    pss_mb: float | None
    # Pages no other process maps: what this one process costs.
    uss_mb: float | None


@dataclass(frozen=True)
class KindMemory:
    kind: str
    count: int
    rss_mb: float  # sum
    rss_max_mb: float
    pss_mb: float | None  # sum, None if smaps_rollup was not readable
    uss_mb: float | None


@dataclass
class MemorySnapshot:
    """Every process of a server at one moment, and how many renders it had made by then."""

    renders: int
    processes: list[ProcessMemory] = field(default_factory=list)

    def by_kind(self) -> list[KindMemory]:
        out = []
        for kind in dict.fromkeys(p.kind for p in self.processes):
            ps = [p for p in self.processes if p.kind == kind]
            rss = [p.rss_mb or 0.0 for p in ps]
            out.append(
                KindMemory(
                    kind=kind,
                    count=len(ps),
                    rss_mb=sum(rss),
                    rss_max_mb=max(rss),
                    pss_mb=_sum_or_none([p.pss_mb for p in ps]),
                    uss_mb=_sum_or_none([p.uss_mb for p in ps]),
                )
            )
        return out

    @property
    def rss_total_mb(self) -> float:
        return sum(p.rss_mb or 0.0 for p in self.processes)

    @property
    def pss_total_mb(self) -> float | None:
        return _sum_or_none([p.pss_mb for p in self.processes])


def _sum_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def memory(root: int, renders: int = 0) -> MemorySnapshot:
    procs = tree(root)
    k = kinds(procs)
    rows = []
    for p in procs:
        if p.state == "Z":
            rows.append(ProcessMemory(p.pid, p.ppid, k[p.pid], p.comm, p.state, 0.0, 0.0, 0.0))
            continue
        roll = _rollup_kb(p.pid)
        private = (
            roll["Private_Clean"] + roll["Private_Dirty"]
            if "Private_Clean" in roll and "Private_Dirty" in roll
            else None
        )
        rows.append(
            ProcessMemory(
                pid=p.pid,
                ppid=p.ppid,
                kind=k[p.pid],
                comm=p.comm,
                state=p.state,
                rss_mb=rss_mb(p.pid),
                pss_mb=roll["Pss"] / 1024 if "Pss" in roll else None,
                uss_mb=None if private is None else private / 1024,
            )
        )
    return MemorySnapshot(renders=renders, processes=rows)
