"""The worker's side of the render processes: start them warm, hand them work, supervise them.

``RenderPool.run`` is called from a render thread: it takes an idle render process of its lane,
sends the task and waits for the answer on a socket, with the GIL released. Three lanes:
``interactive`` (pages, images, the API), ``background`` (report jobs, at a lower priority) and
``probe`` (small tasks with their own deadline, such as figures' data-version functions).

Supervision:

- a task past its deadline gets its process killed (and replaced); the caller learns whether it
  used its CPU all along (too complex, 422) or the machine was busy (503);
- a process that dies mid-task (segfault, OOM killer) costs that task only;
- every reply must answer the request the worker sent, from the process it sent it to, in one
  well-formed frame with nothing after it (``protocol.py``); any surprise kills and replaces
  the process and fails that task with ``RenderProtocolError`` (503), never with another
  task's bytes;
- processes are recycled after ``recycle_after`` tasks, past ``recycle_rss_bytes``, after any
  failure, and when a task left something behind that cannot be undone (``hygiene.py``); they
  run under an address-space cap;
- ``close`` kills every process at once, so a stopping worker never waits for a render.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import (
    RenderCrashed,
    RenderFailed,
    RenderProtocolError,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)
from .forkserver import Task
from .handles import ForkServer, RenderProcess, fork_server
from .lanes import Lane
from .leftovers import Leftovers, StateHook
from .protocol import (
    ProtocolError,
    SpawnOptions,
    is_plain,
    recv_plain,
    reply_for,
    send_frame,
    waiting,
)

log = logging.getLogger("figserve.render")

ACQUIRE_TIMEOUT = 30.0
# A render killed at its deadline after using at least this share of it in CPU time was
# drawing (too complex); less means it mostly waited. With every core busy a render process
# still gets 1/workers of one, so the share is set below that.
CPU_BOUND_SHARE = 0.25
LaneName = Literal["interactive", "background", "probe"]
_request_ids = itertools.count(1)


@dataclass(frozen=True)
class PoolSettings:
    processes: int  # interactive lane: pages, images, API
    background: int  # background lane (jobs), niced
    deadline: float  # seconds one render may take in its process
    memory_bytes: int  # address space a render process may grow by; 0: no cap
    recycle_after: int  # renders per process before it is replaced
    recycle_rss_bytes: int  # resident size past which a process is replaced
    background_nice: int = 10
    probes: int = 0  # probe lane: small tasks with their own deadline
    warm_figures: int = 0  # drawn figures each render process may keep to update


@dataclass(frozen=True)
class Outcome:
    value: Any
    cpu_seconds: float  # CPU time the render process spent on it
    pid: int
    meta: dict[str, Any] = field(default_factory=dict)


class RenderPool:
    """The render processes of one app: create when serving starts, ``close`` when it stops."""

    def __init__(
        self,
        settings: PoolSettings,
        preload: list[str],
        warm_up: Task | None = None,
        figures: list[Any] | None = None,
        on_state: StateHook | None = None,
    ) -> None:
        self.settings = settings
        self._preload = preload
        self._warm_up = warm_up
        self._figures = list(figures or [])
        self.leftovers = Leftovers(on_state)
        memory, warm = settings.memory_bytes, settings.warm_figures
        self._lanes: dict[str, Lane] = {
            "interactive": Lane("interactive", settings.processes, SpawnOptions(0, memory, warm)),
            "background": Lane(
                "background",
                settings.background,
                SpawnOptions(settings.background_nice, memory, warm),
            ),
            "probe": Lane("probe", settings.probes, SpawnOptions(0, memory)),
        }
        self._server: ForkServer | None = None
        self.started = False
        self.closed = False
        self._reviving = False
        self._reviving_lock = threading.Lock()
        self.kills = 0  # processes killed at the deadline
        self.crashes = 0
        self.recycled = 0
        self.protocol_errors = 0

    def _fork_server(self) -> ForkServer:
        return fork_server(self._preload, self._warm_up, self._figures)

    def start(self) -> None:
        """Start the fork server if this process has none, then every render process."""
        self._server = self._fork_server()
        for lane in self._lanes.values():
            while lane.reserve():
                lane.give_back(self._spawn_into(lane))
        self.started = True

    @property
    def healthy(self) -> bool:
        """Can take work: started, not closing, and its fork server runs. A dead fork server is
        replaced in the background (a server taken out of rotation gets no render that would
        replace it)."""
        if not self.started or self.closed:
            return False
        server = self._server
        with self._reviving_lock:
            # Ready once the revival has also replaced the render processes.
            if self._reviving:
                return False
            if server is not None and server.alive:
                return True
            self._reviving = True
            threading.Thread(target=self._revive, name="figserve-revive", daemon=True).start()
        return False

    def _revive(self) -> None:
        try:
            self._server = self._fork_server()
            for lane in self._lanes.values():
                for proc in lane.drop_exited():
                    proc.close()
                while lane.reserve():
                    lane.give_back(self._spawn_into(lane))
        except Exception:
            log.exception("cannot start the render fork server again; readiness stays 503")
        finally:
            with self._reviving_lock:
                self._reviving = False

    def pids(self) -> list[int]:
        return sorted(p.pid for lane in self._lanes.values() for p in list(lane.live))

    def lane_pids(self, lane: LaneName) -> list[int]:
        return sorted(p.pid for p in list(self._lanes[lane].live))

    def _spawn_into(self, lane: Lane) -> RenderProcess:
        try:
            server = self._server if self._server is not None and self._server.alive else None
            if server is None:
                server = self._server = self._fork_server()
            try:
                proc = server.spawn(lane.options)
            except (OSError, EOFError, TimeoutError):
                # The server died or hangs: one restart, then give up for this render.
                server.close(timeout=1.0)
                server = self._server = self._fork_server()
                proc = server.spawn(lane.options)
        except BaseException:
            lane.unreserve()
            raise
        if not lane.admit(proc):
            proc.kill()
            proc.close()
            raise RenderUnavailable("the server is stopping")
        return proc

    def _acquire(self, lane: Lane, prefer: str | None) -> RenderProcess:
        while True:
            proc = lane.take(ACQUIRE_TIMEOUT, prefer)
            if proc is None:
                break
            state = waiting(proc.sock)
            if state == "nothing":
                return proc
            # An idle process owes nothing: bytes now are a late or second reply.
            if state == "data":
                self.protocol_errors += 1
                log.error("render process %d sent a message while idle; replaced", proc.pid)
            self._retire(lane, proc, kill=True)
        try:
            return self._spawn_into(lane)
        except RenderUnavailable:
            raise
        except Exception as exc:
            log.exception("cannot start a render process")
            raise RenderUnavailable("no render process can be started") from exc

    def _retire(self, lane: Lane, proc: RenderProcess, kill: bool) -> None:
        """Take ``proc`` out of service and put a fresh process in its place."""
        if kill:
            proc.kill()
        proc.close()  # a process not killed exits when it reads the end of its socket
        lane.drop(proc)
        if self.closed:
            return
        try:
            if lane.reserve():
                lane.give_back(self._spawn_into(lane))
        except RenderUnavailable:
            pass
        except Exception:
            log.exception("cannot replace a render process; the next render will try again")

    def run(
        self,
        task: Task,
        png_level: int,
        *,
        lane: LaneName = "interactive",
        deadline: float | None = None,
        on_start: Callable[[], None] | None = None,
        prefer: str | None = None,
    ) -> Outcome:
        """Run ``task`` in a render process of ``lane``; blocks, so call from a thread.
        ``deadline`` (seconds) replaces the pool's; ``on_start`` is called once a process has
        the task; ``prefer`` names a warm figure a process may hold (by default the task's
        ``warm_key``: render jobs go to an idle process that keeps their figure)."""
        chosen = self._lanes[lane]
        if prefer is None:
            prefer = getattr(task, "warm_key", None)
        request_id = next(_request_ids)
        message = pickle.dumps(
            (request_id, png_level, pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        deadline = deadline or self.settings.deadline
        for _ in range(2):
            proc = self._acquire(chosen, prefer)
            until = time.monotonic() + deadline
            try:
                send_frame(proc.sock, message, until)
                break
            except TimeoutError:
                # It does not read its task (stopped, or stuck): it cannot run this one.
                self.kills += 1
                self._retire(chosen, proc, kill=True)
                raise RenderTimeout(
                    "a render process did not take its task in time and was replaced",
                    stopped=True,
                ) from None
            except OSError:
                # It died while idle: the task never started, so another process may run it.
                self._retire(chosen, proc, kill=True)
        else:
            raise RenderCrashed("render processes die as they start")
        if on_start is not None:
            on_start()
        try:
            reply = reply_for(recv_plain(proc.sock, until), request_id, proc.pid)
            if waiting(proc.sock) == "data":
                raise ProtocolError("bytes follow a reply")
        except TimeoutError:
            cpu = proc.cpu_now()
            used = None if cpu is None else cpu - proc.cpu
            self.kills += 1
            self._retire(chosen, proc, kill=True)
            if used is not None and used >= CPU_BOUND_SHARE * deadline:
                raise TooComplex(
                    f"drawing took more than {deadline:g} s of CPU time and was stopped",
                    stopped=True,
                ) from None
            raise RenderTimeout(
                f"render took longer than {deadline:g} s and was stopped", stopped=True
            ) from None
        except (EOFError, OSError):
            self._retire(chosen, proc, kill=True)
            if self.closed:
                raise RenderUnavailable("the server is stopping") from None
            self.crashes += 1
            raise RenderCrashed("the render process died during the render") from None
        except ProtocolError as exc:
            self.protocol_errors += 1
            self._retire(chosen, proc, kill=True)
            if self.closed:
                raise RenderUnavailable("the server is stopping") from None
            raise RenderProtocolError(
                f"the render process answered out of turn ({exc}) and was replaced"
            ) from None
        return self._finish(task, chosen, proc, reply)

    def _finish(self, task: Task, lane: Lane, proc: RenderProcess, reply: Any) -> Outcome:
        cpu, proc.cpu = reply.cpu_seconds - proc.cpu, reply.cpu_seconds
        proc.renders += 1
        meta = reply.meta
        held = meta.get("held")
        proc.held = (
            frozenset(k for k in held if type(k) is str) if type(held) is list else proc.held
        )
        leaked = self.leftovers.note(task, meta)
        if leaked:
            self.recycled += 1
            self._retire(lane, proc, kill=True)  # its threads or children go with it
        elif (
            reply.status != "ok"
            or proc.renders >= self.settings.recycle_after
            or reply.rss_bytes > self.settings.recycle_rss_bytes
        ):
            self.recycled += 1
            self._retire(lane, proc, kill=False)
        else:
            lane.give_back(proc)
        if reply.status == "ok":
            return Outcome(reply.value, cpu, proc.pid, meta)
        if reply.status == "memory":
            limit = self.settings.memory_bytes // 2**20
            raise TooComplex(f"drawing needed more than the {limit} MiB a render may use")
        message, remote = _error_texts(reply.value)
        raise RenderFailed(message, remote)

    def close(self) -> None:
        """Kill every render process now; renders in flight end with ``RenderUnavailable``."""
        self.closed = True
        for lane in self._lanes.values():
            idle, busy = lane.close()
            for proc in idle:
                proc.kill()
                proc.close()
            for proc in busy:
                # Its render thread is reading the socket: wake it with the end of the stream
                # and let that thread close it, so the descriptor is never reused under it.
                proc.kill()
                with contextlib.suppress(OSError):
                    proc.sock.shutdown(socket.SHUT_RDWR)


def _error_texts(value: Any) -> tuple[str, str]:
    if type(value) is tuple and len(value) == 2 and is_plain(value):
        message, remote = value
        if type(message) is str and type(remote) is str:
            return message, remote
    return "the figure failed", ""
