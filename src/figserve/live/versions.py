"""Data versions of live figures: what each (figure, parameters) pair's data is now, learnt at
most once per ``refresh`` seconds however many viewers ask.

A figure declares ``version=fn, refresh=seconds``. ``Versions`` keeps one entry per pair that
someone asked for (bounded: least recently used pairs are forgotten first, never one a live
viewer watches), and asks ``fn`` only when the entry is older than ``refresh``: one check at a
time per pair (single-flight), in a render process of the probe lane with a deadline that
kills it, at most ``version_checks`` at once per worker. In scale-out mode the check is made
once for the whole cluster (see ``cluster.py``).

What it gives:

- ``current``: the version a request renders (waits for a due check, bounded by its deadline);
- ``peek`` and ``pin``: what a page may put in a version-pinned URL, without waiting (from any
  thread); a pin is handed out only while its check is fresh, so a browser's immutable copy of a
  pinned URL is never older data than ``refresh``;
- ``watch``/``unwatch``: keep checking a pair every ``refresh`` seconds while viewers look at it;
- ``subscribe``: a queue of every ``Change``; ``generation`` grows whenever what a page would
  show (a pin, a failing source) may have changed, so page caches key on it;
- ``changed``: "this data changed now": check the figure's pairs again at once.

A version function that raises, hangs or returns garbage never breaks a request: the entry keeps
its last good version (``ok`` is False, ``error`` says why) and requests are answered with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..figures import FigureParams, FigureSpec
from ..render.errors import Overloaded
from .entries import (
    Change,
    DataVersion,
    Entry,
    FailedRenders,
    VersionObserver,
    pair_key,
    static_version,
)
from .probe import Outcome, Probe, ask
from .schedule import Schedule

log = logging.getLogger("figserve.live")

QUEUE_SIZE = 10_000  # changes a subscriber may leave unread; past it the oldest are dropped
WAIT_GRACE = 1.0  # seconds a request waits for a check past the check's own deadline


class Versions:
    """One per serving worker: ``await start()``, then ``await close()``."""

    def __init__(
        self,
        settings: Settings,
        probe: Probe,
        *,
        observer: VersionObserver | None = None,
        forget: Callable[[str], None] | None = None,
        cluster: Any = None,
    ) -> None:
        self.settings = settings
        self.observer = observer or VersionObserver()
        self.generation = 0
        self._probe = probe
        self._forget = forget or (lambda figure: None)
        # The scale-out coordinator (``cluster.Cluster``), or None: checks are made here.
        self.cluster = cluster
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._failed = FailedRenders()
        self._lock = threading.Lock()  # the table and the generation, for ``peek`` in threads
        self._checks = 0  # checks running or queued for a render process
        self._subscribers: set[asyncio.Queue[Change]] = set()
        self._schedule = Schedule()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.Task[None] | None = None
        self._started = time.time()

    # -- serving -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._poller = asyncio.create_task(self._schedule.run(self._due), name="figserve-versions")
        if self.cluster is not None:
            await self.cluster.start(self)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.close()

    # -- what requests and pages use -----------------------------------------------------------

    async def current(self, spec: FigureSpec, params: FigureParams) -> DataVersion:
        """The pair's data version, checked within ``spec.refresh`` seconds (waiting for a due
        check, at most its deadline). ``Overloaded`` if it cannot be learnt now."""
        if spec.version is None:
            return static_version(spec)
        entry = self._entry(spec, params)
        if entry.fresh_until > time.monotonic():
            return entry.view()
        task = self._check(entry)
        if entry.error is not None and entry.data is not None:
            # Its source failed last time: answer with the last good version at once rather
            # than make every request wait for a source that may hang again.
            return entry.view()
        if task is None:
            if entry.data is not None:
                return entry.view()
            raise Overloaded(f"{self._checks} data version checks are already under way")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.version_timeout + WAIT_GRACE):
                await asyncio.shield(task)
        return entry.view()

    def peek(self, spec: FigureSpec, params: FigureParams) -> DataVersion | None:
        """The pair's version if it was checked within ``refresh`` seconds, else None (and a
        check is started). Never waits; callable from any thread."""
        if spec.version is None:
            return static_version(spec)
        key = pair_key(spec, params)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.fresh_until > time.monotonic():
                if not entry.shown:
                    # Pages now hold its pin: check it again when it expires (``_due``).
                    entry.shown = True
                    self._call_soon(self._plan, entry, entry.fresh_until)
                return entry.view()
        self._call_soon(self._peeked, spec, params)
        if entry is not None and entry.error is not None:
            return entry.view()  # what is known: its source failed (never pinned: not ok)
        return None

    def pin(self, spec: FigureSpec, params: FigureParams) -> str | None:
        """The token of ``_v`` for a version-pinned URL of the pair; None when it must not be
        pinned (not deterministic, version unknown or not fresh, its source failing)."""
        if not spec.deterministic(params):
            return None
        version = self.peek(spec, params)
        return version.pin if version is not None and version.ok else None

    def earlier(self, spec: FigureSpec, params: FigureParams) -> list[str]:
        """The pair's earlier good data versions, newest first (images may be cached under
        them)."""
        with self._lock:
            entry = self._entries.get(pair_key(spec, params))
            return list(entry.history) if entry is not None else []

    def render_failed(self, key: str, refresh: float) -> None:
        """The image of job ``key`` failed to draw: for ``refresh`` seconds, requests for it are
        answered with an earlier version's image without trying again."""
        self._failed.add(key, refresh)

    def failed_render(self, key: str) -> bool:
        return key in self._failed

    def watch(self, spec: FigureSpec, params: FigureParams) -> None:
        """Check the pair every ``refresh`` seconds until as many ``unwatch`` calls came."""
        if spec.version is None:
            return
        entry = self._entry(spec, params)
        entry.watchers += 1
        self._plan(entry, entry.fresh_until)

    def unwatch(self, spec: FigureSpec, params: FigureParams) -> None:
        with self._lock:
            entry = self._entries.get(pair_key(spec, params))
            if entry is not None and entry.watchers > 0:
                entry.watchers -= 1

    def subscribe(self) -> asyncio.Queue[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self._subscribers.discard(queue)

    async def changed(self, figure: str, params: dict[str, Any] | None = None) -> int:
        """ "This data changed now": the figure's pairs (those whose parameters include
        ``params``) are checked again at once, here and, in scale-out mode, on every instance.
        The number of pairs whose version changed here."""
        at = time.time()
        if self.cluster is not None:
            await self.cluster.announce(figure, params, at)
        return await self.recheck(figure, params, at)

    # -- entries -------------------------------------------------------------------------------

    def _entry(self, spec: FigureSpec, params: FigureParams) -> Entry:
        key = pair_key(spec, params)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            if len(self._entries) >= self.settings.version_pairs and not self._evict():
                raise Overloaded(
                    f"{len(self._entries)} figure and parameter pairs are watched live"
                )
            entry = self._entries[key] = Entry(spec, params, key)
        self.observer.version_pairs(len(self._entries))
        return entry

    def _evict(self) -> bool:
        """Forget the least recently used pair nobody watches; False if every pair is watched.
        Called with the lock held."""
        for key, entry in self._entries.items():
            if entry.watchers == 0 and entry.task is None:
                del self._entries[key]
                if entry.shown or entry.handed:
                    self.generation += 1  # a cached page may hold its pin
                return True
        return False

    def _matching(self, figure: str, params: dict[str, Any] | None) -> list[Entry]:
        with self._lock:
            entries = [e for e in self._entries.values() if e.spec.name == figure]
        if not params:
            return entries
        return [e for e in entries if e.includes(params)]

    async def recheck(self, figure: str, params: dict[str, Any] | None, at: float) -> int:
        """Make the figure's pairs due (a check begun before ``at`` no longer counts) and check
        them now, as many as ``version_checks`` allows (the rest on their next request). The
        number of pairs whose version changed."""
        entries = self._matching(figure, params)
        with self._lock:
            for entry in entries:
                entry.due_after = max(entry.due_after, at)
                entry.fresh_until = -math.inf
            self.generation += 1
        self._forget(figure)  # cached answers of its images go through a check again
        before = {id(e): e.data for e in entries}
        tasks = [t for e in entries if (t := self._check(e)) is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        return sum(1 for e in entries if e.data != before[id(e)])

    # -- checks --------------------------------------------------------------------------------

    def _check(self, entry: Entry) -> asyncio.Task[None] | None:
        """The entry's check in flight, or a new one; None past ``version_checks``. (A check
        that began before a ``changed`` does not count as fresh: see ``Entry.take``.)"""
        if entry.task is not None:
            return entry.task
        if self._checks >= self.settings.version_checks:
            return None
        self._checks += 1
        entry.task = asyncio.create_task(self._run_check(entry))
        return entry.task

    async def _run_check(self, entry: Entry) -> None:
        started = time.perf_counter()
        try:
            if self.cluster is not None and self.cluster.available:
                outcome = await self.cluster.check(entry, self._ask)
            else:
                outcome = await self._ask(entry)
            self._apply(entry, *outcome, seconds=time.perf_counter() - started)
        except Exception:
            log.exception("data version check failed figure=%s", entry.spec.name)
        finally:
            self._checks -= 1
            entry.task = None

    async def _ask(self, entry: Entry) -> Outcome:
        assert entry.spec.version is not None
        return await ask(
            self._probe, entry.spec.version, entry.params, self.settings.version_timeout
        )

    def _apply(
        self, entry: Entry, data: str | None, error: str | None, when: float, outcome: str, *,
        seconds: float = 0.0,
    ) -> None:  # fmt: skip
        """Take a check's result into the entry; announce what changed."""
        spec = entry.spec
        previous, failing = entry.data, entry.error is not None
        with self._lock:
            changed = entry.take(data, error, when, spec.refresh)
            first = previous is None and entry.data is not None
            if changed or first or failing != (entry.error is not None):
                self.generation += 1
        if outcome == "ok":
            outcome = "changed" if changed else "same"
        self.observer.version_checked(spec.name, outcome, seconds)
        if error is not None:
            log.warning(
                "data version check failed figure=%s params=%s: %s; %s",
                spec.name,
                entry.key[1][:200],
                error[:300],
                "serving the last good version" if entry.data else "no good version yet (503)",
            )
        elif failing:
            log.info("data version check recovered figure=%s", spec.name)
        if entry.watchers or entry.shown:
            entry.handed = entry.handed or entry.shown
            entry.shown = False
            self._plan(entry, entry.fresh_until)
        if changed and not first:
            self._announce(entry)

    def _announce(self, entry: Entry) -> None:
        view = entry.view()
        change = Change(entry.spec.name, entry.params.model_dump(mode="json"), view.pin, view.data)
        self._forget(entry.spec.name)
        self.observer.version_changed(entry.spec.name)
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # the oldest goes: a reader that far behind resyncs
            queue.put_nowait(change)

    def adopt(self, entry: Entry, data: str | None, error: str | None, when: float) -> None:
        """A check made by another instance (scale-out)."""
        if entry.task is None:
            self._apply(entry, data, error, when, "shared")

    def resync(self) -> None:
        """Every pair is checked again (in scale-out mode: its record read again) on its next
        request, and watched or shown pairs at once: what a lost subscription missed."""
        with self._lock:
            entries = list(self._entries.values())
            for entry in entries:
                entry.fresh_until = -math.inf
            self.generation += 1
        for entry in entries:
            if entry.watchers or entry.shown:
                self._plan(entry, -math.inf)

    def entry(self, figure: str, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get((figure, key))

    # -- the schedule of watched and shown pairs ----------------------------------------------

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    def _peeked(self, spec: FigureSpec, params: FigureParams) -> None:
        """A page asked for a pin it could not have: learn it for the next page."""
        with contextlib.suppress(Overloaded):
            self._check(self._entry(spec, params))

    def _plan(self, entry: Entry, at: float) -> None:
        self._schedule.plan(entry.key, at)

    def _due(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.task is not None:
            return
        if entry.fresh_until > now:
            self._plan(entry, entry.fresh_until)  # checked meanwhile (a request, an instance)
        elif entry.watchers or entry.shown:
            if self._check(entry) is None:
                self._plan(entry, now + 1.0)  # busy: try again shortly
        elif entry.handed:
            # Pages were given its pin, and none asked since: a cached page must be drawn
            # again, so it does not keep a pin that is no longer checked.
            with self._lock:
                entry.handed = False
                self.generation += 1
