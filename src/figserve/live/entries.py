"""What ``Versions`` keeps and gives: data versions, pins, changes, and one entry per pair."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from ..figures import FigureParams, FigureSpec
from ..figures.identity import figure_version

PIN_PARAM = "_v"  # the reserved query parameter of version-pinned URLs
# What ``_v`` may hold: a pin of this release (16 hex digits) or of another one. A well-formed
# pin that is not current is answered with the current image; anything else is a 400.
PIN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
NOT_KNOWN = "the data version is not known yet"  # no check has ended yet
HISTORY = 4  # earlier good data versions kept per pair, for the images cached under them


@dataclass(frozen=True)
class DataVersion:
    """A pair's data version as a request or a page sees it.

    ``data``: the version function's last good answer as text (None for figures without
    one, or when none was good yet); ``pin``: the ``_v`` token of that version (code version and
    data); ``ok``: the last check succeeded; ``error``: why not; ``checked``: when (wall clock,
    ``time.time()``) ``data`` was last confirmed; ``fresh_until``: when (``time.monotonic()``) it
    must be checked again (``inf`` for figures without a version function).
    """

    data: str | None
    pin: str
    ok: bool
    error: str | None
    checked: float
    fresh_until: float = math.inf


@dataclass(frozen=True)
class Change:
    """A pair's new data version (``params`` as JSON values)."""

    figure: str
    params: dict[str, Any]
    pin: str
    data: str | None


class VersionObserver:
    """Receives the events of ``Versions`` (metrics); the base class ignores them."""

    def version_checked(self, figure: str, outcome: str, seconds: float) -> None:
        """``outcome``: same, changed, failed, timeout, invalid, busy, or shared
        (another instance's check was taken)."""

    def version_changed(self, figure: str) -> None:
        pass

    def version_pairs(self, count: int) -> None:
        pass

    def figure_stale(self, figure: str, reason: str) -> None:
        """An image of an older data version was served (``reason``: check, render)."""


def params_text(params: FigureParams) -> str:
    return json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def pair_key(spec: FigureSpec, params: FigureParams) -> tuple[str, str]:
    return spec.name, params_text(params)


def pin_for(spec: FigureSpec, data: str | None) -> str:
    """The ``_v`` token of ``spec``'s code version and the data version ``data``."""
    text = f"{figure_version(spec)}\0{'' if data is None else data}".encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


_STATIC: dict[FigureSpec, DataVersion] = {}


def static_version(spec: FigureSpec) -> DataVersion:
    """The version of a figure without a version function: its code version alone."""
    known = _STATIC.get(spec)
    if known is None:
        known = _STATIC[spec] = DataVersion(None, pin_for(spec, None), True, None, 0.0)
    return known


@dataclass(eq=False)
class Entry:
    """One (figure, parameters) pair: its last good data version and its last check."""

    spec: FigureSpec
    params: FigureParams
    key: tuple[str, str]
    data: str | None = None
    pin: str = ""
    good: float = 0.0  # wall clock of the last check that confirmed ``data``
    error: str | None = None  # why the last check failed; None if it succeeded
    fresh_until: float = -math.inf  # monotonic: checked again after this
    due_after: float = 0.0  # wall clock: a check begun before this does not count
    watchers: int = 0
    shown: bool = False  # pages got its pin since its last check
    handed: bool = False  # pages got its pin before that (a page cache may hold it)
    task: asyncio.Task[None] | None = None
    history: deque[str] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def __post_init__(self) -> None:
        self.pin = pin_for(self.spec, None)

    def view(self) -> DataVersion:
        ok = self.error is None and self.data is not None
        error = self.error or (None if ok else NOT_KNOWN)
        return DataVersion(self.data, self.pin, ok, error, self.good, self.fresh_until)

    def take(self, data: str | None, error: str | None, when: float, refresh: float) -> bool:
        """A check's result (``data`` with ``error`` None: it succeeded; ``error``: it failed,
        ``data`` then being None or, from another instance's record, the last good version).
        True if it gave a data version other than the last good one."""
        changed = data is not None and data != self.data
        if changed:
            if self.data is not None:
                self.history.appendleft(self.data)
            self.data = data
            self.pin = pin_for(self.spec, data)
        if error is None and data is not None:
            self.good = max(self.good, when)
            self.error = None
        else:
            self.error = error or "the version check failed"
        if when >= self.due_after:
            self.fresh_until = time.monotonic() + refresh - max(0.0, time.time() - when)
        else:
            self.fresh_until = -math.inf  # begun before "changed now": check again
        return changed

    def includes(self, params: dict[str, Any]) -> bool:
        """Whether this pair's parameters hold every value of ``params``."""
        mine = self.params.model_dump(mode="json")
        return all(name in mine and mine[name] == value for name, value in params.items())


class FailedRenders:
    """Job keys whose image failed to draw, each remembered for a while (bounded)."""

    SIZE = 1024

    def __init__(self) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()  # key -> monotonic

    def add(self, key: str, seconds: float) -> None:
        self._until[key] = time.monotonic() + seconds
        self._until.move_to_end(key)
        while len(self._until) > self.SIZE:
            self._until.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        until = self._until.get(key)  # type: ignore[call-overload]
        if until is not None and until <= time.monotonic():
            del self._until[key]  # type: ignore[arg-type]
            return False
        return until is not None
