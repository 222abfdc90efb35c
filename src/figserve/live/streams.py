"""Live viewers: who follows which figure, what each has not been told yet, and the render ahead
of them when a figure's version changes.

A *stream* is one viewer's connection (a page, or every tab of a browser sharing one). It follows
a few figures, each a (figure, parameters) *pair* shown at some sizes and formats (*targets*).
The hub keeps, per pair, the streams that follow it and the targets they show, and asks the
data versions service to keep checking the pair while anybody looks (``versions.watch``).

When a pair's version changes (a ``Change`` from ``versions.subscribe()``, from this instance or
another one, or a new pin seen by the sweep), the hub renders the new version once for every
target viewers show, so that their requests find it in the cache, and only then tells the
streams: cost grows with changes, not with viewers. Telling a stream never waits for it: each
stream keeps the latest notice per pair (a bounded, coalescing queue: a viewer that falls
behind gets the newest pin, never a backlog), and its own task sends it when it can.

Nothing here knows HTTP; ``web/live.py`` turns streams into Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from ..config import Settings
from ..figures import FigureParams, FigureSpec, Registry
from ..render import ImageOptions, job_for
from .viewers import HubObserver, Notice, Refused, Stream, Viewed, live_key

__all__ = ["HubObserver", "Notice", "Refused", "Stream", "StreamHub", "Viewed", "live_key"]

log = logging.getLogger("figserve.live")

# How often the hub compares what it announced with the versions service (a missed or
# coalesced change, a figure whose data became unreadable or readable again), and looks for
# streams whose client stopped reading.
SWEEP_SECONDS = 1.0
# A pair nobody follows any more is still followed this long: a viewer that reconnects (a reload,
# a dropped connection) finds it with what changed meanwhile, and its checks do not churn.
LINGER_SECONDS = 30.0
# Targets rendered ahead per change of one pair: the most watched ones. Others render when
# asked, once (single-flight).
MAX_AHEAD = 8


class Versions(Protocol):
    """What the hub uses of the data versions service (``figserve/live/versions.py``)."""

    async def current(self, spec: FigureSpec, params: FigureParams) -> Any: ...
    def peek(self, spec: FigureSpec, params: FigureParams) -> Any: ...
    def pin(self, spec: FigureSpec, params: FigureParams) -> str | None: ...
    def watch(self, spec: FigureSpec, params: FigureParams) -> Any: ...
    def unwatch(self, spec: FigureSpec, params: FigureParams) -> Any: ...
    def subscribe(self) -> asyncio.Queue[Any]: ...
    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None: ...


class _Pair:
    """A (figure, parameters) pair that live viewers follow."""

    __slots__ = (
        "busy",
        "data",
        "idle_since",
        "key",
        "latest",
        "options",
        "params",
        "pin",
        "seq",
        "since",
        "spec",
        "stale",
        "streams",
        "targets",
    )

    def __init__(self, viewed: Viewed, since: int) -> None:
        self.spec = viewed.spec
        self.params = viewed.params
        self.key = viewed.key
        self.streams: set[Stream] = set()
        self.targets: Counter[str] = Counter()  # target -> streams showing it
        self.options: dict[str, ImageOptions] = {}
        self.pin: str | None = None  # announced
        self.stale = False  # announced
        self.latest: str | None = None  # the newest pin known, maybe not announced yet
        self.data: str | None = None  # its data version
        self.seq = 0  # the hub's sequence number when this pair was last announced
        self.since = since  # ... when the hub began to follow it
        self.busy = False  # an announcement (render ahead, then notices) is under way
        self.idle_since: float | None = None  # when its last stream left


def _version_fields(version: Any) -> tuple[str | None, str | None, bool]:
    """(pin, data, stale) of a ``DataVersion`` (or None: not known yet)."""
    if version is None:
        return None, None, False
    return version.pin, version.data, not getattr(version, "ok", True)


async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


class StreamHub:
    """Create one per serving app; ``await start()``, then ``await close()``."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        versions: Versions,
        render: Callable[[Any], Awaitable[Any]],
        observer: HubObserver | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.versions = versions
        self._render = render
        self.observer = observer or HubObserver()
        # Message ids are "<epoch>.<seq>": a client that reconnects to this hub says what it
        # has seen; an id of another epoch (another instance, an earlier start) says nothing.
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.streams: set[Stream] = set()
        self.clients: Counter[str] = Counter()
        self.pairs: dict[str, _Pair] = {}
        self.stopping = False
        self.renders_ahead = 0  # renders asked for ahead of viewers (tests, benchmark)
        self.linger = LINGER_SECONDS
        self._sending: set[Stream] = set()
        self._ahead = asyncio.Semaphore(max(1, settings.processes))
        self._queue: asyncio.Queue[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._queue = self.versions.subscribe()
        self._spawn(self._dispatch())
        self._spawn(self._sweep())

    def shutdown(self) -> None:
        """The server stops: refuse new streams and end every open one now (their clients
        reconnect, to another instance if there is one)."""
        if not self.stopping:
            self.stopping = True
            log.info("live streams closing for the stop streams=%d", len(self.streams))
        for stream in list(self.streams):
            stream.close("stop")

    async def close(self) -> None:
        self.shutdown()
        # A stream whose client does not read cannot take its last message: end its task.
        for stream in list(self.streams):
            if stream.task is not None:
                stream.task.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._queue is not None:
            self.versions.unsubscribe(self._queue)
            self._queue = None
        for pair in list(self.pairs.values()):
            await self._unwatch(pair)
        self.pairs.clear()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- streams --------------------------------------------------------------------------

    async def open(
        self, client: str, viewed: Iterable[Viewed], last_event_id: str | None = None
    ) -> tuple[Stream, list[Notice]]:
        """A new stream of ``client`` following ``viewed``, and what it must be told at once:
        what changed since ``last_event_id`` (an id this hub gave), else every known pin.
        ``Refused`` past the limits."""
        s = self.settings
        if self.stopping:
            self._refuse("stopping", "The server is stopping; reconnect in a moment.")
        if len(self.streams) >= s.live_max_streams:
            self._refuse("busy", f"This server has {len(self.streams)} live streams open.")
        if self.clients[client] >= s.live_max_client_streams:
            self._refuse("client", f"At most {s.live_max_client_streams} live streams per client.")
        stream = Stream(client, tuple(viewed))
        self.streams.add(stream)
        self.clients[client] += 1
        self.observer.streams(1)
        new: list[_Pair] = []
        followed: dict[str, _Pair] = {}
        for v in stream.viewed:
            pair = self.pairs.get(v.key)
            if pair is None:
                self.seq += 1  # an id from before this names nothing of the pair
                pair = self.pairs[v.key] = _Pair(v, self.seq)
                new.append(pair)
            pair.idle_since = None
            pair.streams.add(stream)
            pair.targets[v.target] += 1
            pair.options.setdefault(v.target, v.options)
            followed[v.key] = pair
        for pair in new:
            await self._watch(pair)
        return stream, self._catch_up(followed.values(), last_event_id)

    def _refuse(self, reason: Literal["busy", "client", "stopping"], message: str) -> None:
        self.observer.refused(reason)
        raise Refused(reason, message)

    def release(self, stream: Stream) -> None:
        """The stream ended (any way): forget it; idempotent."""
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        self._sending.discard(stream)
        self.clients[stream.client] -= 1
        if self.clients[stream.client] <= 0:
            del self.clients[stream.client]
        self.observer.streams(-1)
        self.observer.ended(stream.reason)
        for v in stream.viewed:
            pair = self.pairs.get(v.key)
            if pair is None:
                continue
            pair.streams.discard(stream)
            pair.targets[v.target] -= 1
            if pair.targets[v.target] <= 0:
                del pair.targets[v.target]
                pair.options.pop(v.target, None)
            if not pair.streams:
                pair.idle_since = time.monotonic()

    def sending(self, stream: Stream, waiting: bool) -> None:
        """A message of ``stream`` waits for its client (True) or was taken (False)."""
        if waiting:
            stream.sending = time.monotonic()
            self._sending.add(stream)
        else:
            stream.sending = None
            self._sending.discard(stream)

    def message_id(self) -> str:
        return f"{self.epoch}.{self.seq}"

    def _catch_up(self, pairs: Iterable[_Pair], last_event_id: str | None) -> list[Notice]:
        seen = self._seen(last_event_id)
        return [
            Notice(p.key, p.pin, p.stale)
            for p in pairs
            if p.pin is not None and (seen is None or p.seq > seen or p.since > seen)
        ]

    def _seen(self, last_event_id: str | None) -> int | None:
        """The sequence number a client saw last, if its id is one of this hub's."""
        if not last_event_id:
            return None
        epoch, _, number = last_event_id.strip().partition(".")
        if epoch != self.epoch or not number.isascii() or not number.isdigit():
            return None
        seen = int(number[:20])
        return seen if seen <= self.seq else None

    # -- versions -------------------------------------------------------------------------

    async def _watch(self, pair: _Pair) -> None:
        try:
            await _maybe_await(self.versions.watch(pair.spec, pair.params))
        except Exception:
            log.exception("live: watching %s failed", pair.spec.name)
        pin, data, stale = _version_fields(self.versions.peek(pair.spec, pair.params))
        if pin is None:
            # Not known yet (or due): learnt by a check, without holding up this stream.
            self._spawn(self._learn(pair))
        elif pair.latest is None:
            pair.pin = pair.latest = pin
            pair.data, pair.stale = data, stale

    async def _learn(self, pair: _Pair) -> None:
        """The pair's version as a check gives it (waiting for a due one), taken as a change."""
        try:
            version = await self.versions.current(pair.spec, pair.params)
        except Exception as exc:  # overloaded, stopping: the next sweep tries again
            log.debug("live: version of %s not learnt now: %s", pair.spec.name, exc)
            return
        self._changed(pair, *_version_fields(version))

    async def _unwatch(self, pair: _Pair) -> None:
        try:
            await _maybe_await(self.versions.unwatch(pair.spec, pair.params))
        except Exception:
            log.exception("live: unwatching %s failed", pair.spec.name)

    async def _dispatch(self) -> None:
        assert self._queue is not None
        while True:
            change = await self._queue.get()
            try:
                self._on_change(change)
            except Exception:
                log.exception("live: a version change could not be handled: %r", change)

    def _on_change(self, change: Any) -> None:
        spec = self.registry.get(change.figure)
        if spec is None:
            return
        try:
            params = spec.params.model_validate(change.params)
        except ValidationError:
            log.warning("live: a change of %s has parameters it does not take", spec.name)
            return
        pair = self.pairs.get(live_key(spec.name, params))
        if pair is not None:
            version = self.versions.peek(pair.spec, pair.params)
            stale = version is not None and not getattr(version, "ok", True)
            self._changed(pair, change.pin, change.data, stale)

    def _changed(self, pair: _Pair, pin: str | None, data: str | None, stale: bool) -> None:
        if pin is None:
            return
        if pin == pair.latest:
            if stale != pair.stale and not pair.busy and pair.pin == pin:
                pair.stale = stale
                self._announce(pair)
            return
        pair.latest, pair.data = pin, data
        pair.stale = stale
        if not pair.busy:
            pair.busy = True
            self._spawn(self._render_then_announce(pair))

    async def _render_then_announce(self, pair: _Pair) -> None:
        try:
            while pair.latest is not None and pair.latest != pair.pin:
                pin, data = pair.latest, pair.data
                log.debug("live: %s %s: rendering ahead for pin %s", pair.spec.name, pair.key, pin)
                await self._render_ahead(pair, data)
                if pair.latest != pin:
                    continue  # a newer version arrived meanwhile: render that one instead
                pair.pin = pin
                self._announce(pair)
        finally:
            pair.busy = False

    def _announce(self, pair: _Pair) -> None:
        assert pair.pin is not None
        log.debug("live: %s %s: pin %s told to %d streams", pair.spec.name, pair.key, pair.pin,
                  len(pair.streams))  # fmt: skip
        self.seq += 1
        pair.seq = self.seq
        notice = Notice(pair.key, pair.pin, pair.stale)
        for stream in pair.streams:
            stream.push(notice)
        self.observer.announced(pair.spec.name, len(pair.streams))

    async def _render_ahead(self, pair: _Pair, data: str | None) -> None:
        """Render the new version for the targets viewers show (the most watched first), so
        their requests hit the cache; a failure is logged and the viewers are told anyway
        (their requests then get the image route's own answer)."""
        chosen = [pair.options[t] for t, _ in pair.targets.most_common(MAX_AHEAD)]

        async def one(opts: ImageOptions) -> None:
            async with self._ahead:
                try:
                    # Exactly the job the image route makes for this image and data.
                    job = job_for(
                        pair.spec,
                        pair.params,
                        opts,
                        self.settings.max_pixels,
                        data,
                        png_level=self.settings.png_compress_level,
                    )
                    self.renders_ahead += 1
                    await self._render(job)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.observer.ahead(pair.spec.name, "failed")
                    log.warning("live: render ahead of %s failed: %s", pair.spec.name, exc)
                else:
                    self.observer.ahead(pair.spec.name, "done")

        await asyncio.gather(*(one(o) for o in chosen))

    async def _sweep(self) -> None:
        learning: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self._end_stalled()
                self._let_go()
                if learning is None or learning.done():  # one round of checks at a time
                    learning = self._spawn(self._learn_all())
            except Exception:
                log.exception("live: sweep failed")

    async def sweep(self) -> None:
        """One round of what the hub does every second: end streams whose client stopped
        reading, let go of pairs nobody followed for a while, and catch what no change event
        said (a version first learnt, data that became stale or readable again)."""
        self._end_stalled()
        self._let_go()
        await self._learn_all()

    def _let_go(self) -> None:
        now = time.monotonic()
        for pair in list(self.pairs.values()):
            idle = pair.idle_since
            if idle is not None and now - idle >= self.linger and not pair.busy:
                del self.pairs[pair.key]
                self._spawn(self._unwatch(pair))

    async def _learn_all(self) -> None:
        # From the versions as checks give them: a look without waiting (``peek``) sees
        # nothing while a pair's check is due, which is every ``refresh`` seconds.
        followed = [p for p in self.pairs.values() if p.idle_since is None]
        await asyncio.gather(*(self._learn(pair) for pair in followed))

    def _end_stalled(self) -> None:
        limit = time.monotonic() - self.settings.live_send_timeout
        for stream in list(self._sending):
            if stream.sending is not None and stream.sending < limit:
                log.info("live: stream of %s closed: its client took nothing for %.0f s",
                         stream.client, self.settings.live_send_timeout)  # fmt: skip
                stream.close("stalled")
                self._sending.discard(stream)
                if stream.task is not None:
                    stream.task.cancel()
