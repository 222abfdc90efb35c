"""What live viewers are to the hub: the images they show, the notices they get, and the
stream that holds what one viewer has not been told yet (``streams.py`` keeps them)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from ..figures import FigureParams, FigureSpec
from ..render import ImageOptions


def live_key(name: str, params: FigureParams) -> str:
    """A short, stable name of (figure, parameters): the same on every instance of a release,
    written into pages (``data-live``) and into the messages that update them."""
    text = json.dumps([name, params.model_dump(mode="json")], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Viewed:
    """One image a viewer shows: a figure with its parameters, at a size and format."""

    spec: FigureSpec
    params: FigureParams
    options: ImageOptions
    key: str

    @classmethod
    def of(cls, spec: FigureSpec, params: FigureParams, options: ImageOptions) -> Viewed:
        return cls(spec, params, options, live_key(spec.name, params))

    @property
    def target(self) -> str:
        return self.options.model_dump_json(exclude_unset=True)


@dataclass(frozen=True)
class Notice:
    """What a viewer is told of one pair: its current pin, and whether its data is stale (the
    version could not be learnt, so the last good image is what is served)."""

    key: str
    pin: str
    stale: bool

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "pin": self.pin, "stale": self.stale}


class Refused(Exception):
    """No stream for this request: the worker is full, the client has too many, or stopping."""

    def __init__(self, reason: Literal["busy", "client", "stopping"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


class HubObserver:
    """Receives the hub's events (metrics); the base class ignores them."""

    def streams(self, delta: int) -> None:
        pass

    def refused(self, reason: str) -> None:
        pass

    def ended(self, reason: str) -> None:
        pass

    def announced(self, figure: str, streams: int) -> None:
        pass

    def ahead(self, figure: str, outcome: str) -> None:
        pass


class Stream:
    """One viewer's connection: the pairs it follows, and the notices it has not taken yet."""

    __slots__ = ("_pending", "_wake", "client", "closed", "reason", "sending", "task", "viewed")

    def __init__(self, client: str, viewed: tuple[Viewed, ...]) -> None:
        self.client = client
        self.viewed = viewed
        self._pending: dict[str, Notice] = {}  # pair key -> latest notice: never more
        self._wake = asyncio.Event()
        self.closed = False
        self.reason = "client"
        self.sending: float | None = None  # since when a message waits for the client
        self.task: asyncio.Task[Any] | None = None

    def push(self, notice: Notice) -> None:
        self._pending[notice.key] = notice
        self._wake.set()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._wake.set()

    async def next(self, timeout: float) -> list[Notice] | None:
        """The notices not taken yet (the latest per pair); an empty list after ``timeout``
        seconds without any (time for a keep-alive); None once the stream is closed."""
        if not self._pending and not self.closed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        if self.closed:
            return None
        pending, self._pending = self._pending, {}
        return list(pending.values())
