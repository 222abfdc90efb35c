"""A Server-Sent Events client for tests: one stream read in the background, its events kept."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.data)


class EventStream:
    """``async with EventStream(url) as s``: the response's status and headers, then its events
    as they arrive (``s.events``, ``await s.wait_for(...)``); ``s.ended`` once it closed."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, local_address: str | None = None
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.local_address = local_address  # connect from this address (127.0.0.x)
        self.events: list[Event] = []
        self.comments = 0
        self.ended = asyncio.Event()
        self.status = 0
        self.response_headers: httpx.Headers | None = None
        self.body = b""
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        transport = httpx.AsyncHTTPTransport(local_address=self.local_address)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), transport=transport)
        request = self._client.build_request("GET", self.url, headers=self.headers)
        response = await self._client.send(request, stream=True)
        self.status = response.status_code
        self.response_headers = response.headers
        if self.status != 200:
            self.body = await response.aread()
            await response.aclose()
            await self._client.aclose()  # nothing more will come
            self._client = None
            self.ended.set()
        else:
            self._task = asyncio.create_task(self._read(response))
        return self

    async def _read(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        last_id: str | None = None
        try:
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        last_id = fields.get("id", last_id)
                        kind = fields.get("event", "message")
                        now = time.monotonic()
                        self.events.append(Event(kind, fields["data"], last_id, now))
                    fields = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            await response.aclose()
            self.ended.set()

    def figures(self) -> list[dict[str, Any]]:
        """Every figure notice received, in order."""
        return [f for e in self.events if e.event == "figure" for f in e.json()["figures"]]

    def pins(self) -> dict[str, str]:
        """The latest pin received per figure key."""
        return {f["key"]: f["pin"] for f in self.figures()}

    async def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                last = self.events[-1].data[:300] if self.events else None
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}: "
                    f"{len(self.events)} events, the last {last!r}"
                )
            await asyncio.sleep(0.01)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


def stream_url(base: str, *targets: str, last: str | None = None) -> str:
    query = httpx.QueryParams([("f", t) for t in targets] + ([("last", last)] if last else []))
    return f"{base}/live/stream?{query}"
