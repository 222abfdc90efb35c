"""A stand-in for the data versions service, for tests of what builds on it (live streams).

It keeps a version per (figure, params) that the test sets, and behaves as the service's
contract says: ``peek``/``pin`` answer at once, ``watch``/``unwatch`` count viewers, and every
change is put on each ``subscribe()`` queue as a ``Change``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from figserve.live import Change, DataVersion


def _key(spec: Any, params: Any) -> tuple[str, str]:
    return spec.name, json.dumps(params.model_dump(mode="json"), sort_keys=True)


class FakeVersions:
    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], DataVersion] = {}
        self.watching: Counter[tuple[str, str]] = Counter()
        self.queues: list[asyncio.Queue[Change]] = []
        self.generation = 0

    def set(self, spec: Any, params: Any, data: str, ok: bool = True, tell: bool = True) -> str:
        """The data of (spec, params) is now ``data``; its pin is returned. ``tell=False``
        changes it without a ``Change`` (as a change missed, or seen only by a check)."""
        key = _key(spec, params)
        pin = f"p-{data}"
        self.versions[key] = DataVersion(data, pin, ok, None if ok else "failed", time.time())
        if tell:
            self.generation += 1
            change = Change(spec.name, params.model_dump(mode="json"), pin, data)
            for queue in self.queues:
                queue.put_nowait(change)
        return pin

    def fail(self, spec: Any, params: Any) -> None:
        """The version function now raises: the last good version stays, marked not ok."""
        key = _key(spec, params)
        old = self.versions[key]
        self.versions[key] = DataVersion(old.data, old.pin, False, "boom", time.time())

    async def current(self, spec: Any, params: Any) -> DataVersion | None:
        return self.peek(spec, params)

    def peek(self, spec: Any, params: Any) -> DataVersion | None:
        return self.versions.get(_key(spec, params))

    def pin(self, spec: Any, params: Any) -> str | None:
        version = self.peek(spec, params)
        return None if version is None else version.pin

    def watch(self, spec: Any, params: Any) -> None:
        self.watching[_key(spec, params)] += 1

    def unwatch(self, spec: Any, params: Any) -> None:
        key = _key(spec, params)
        self.watching[key] -= 1
        assert self.watching[key] >= 0, f"unwatched more than watched: {key}"
        if not self.watching[key]:
            del self.watching[key]

    def subscribe(self) -> asyncio.Queue[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self.queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self.queues.remove(queue)
