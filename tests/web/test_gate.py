"""The gate in front of the app: a bounded number of requests start at once, the rest wait
their turn at no cost, liveness never waits, and a slot comes back at the end of its lease."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from figserve.web.asgi import guard
from figserve.web.gate import Gate


class Held:
    """An app whose requests wait until the test releases them; it counts them inside."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})
        finally:
            self.inside -= 1


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


async def call(app: Any, path: str) -> tuple[int, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope(path), receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0)


async def test_only_the_slots_start_and_liveness_passes_by() -> None:
    held = Held()
    app = guard(held, body_timeout=30, max_body_bytes=1 << 20, gate_slots=3, gate_lease=60)
    requests = [asyncio.create_task(call(app, "/page")) for _ in range(20)]
    await until(lambda: held.inside == 3)
    for _ in range(50):
        await asyncio.sleep(0)
    assert held.inside == 3  # the other 17 wait outside, costing nothing
    assert await call(app, "/healthz") == (200, b"ok\n")  # never behind the gate
    held.release.set()
    assert [await r for r in requests] == [(200, b"done")] * 20
    assert held.most == 3


async def test_a_slot_comes_back_at_the_end_of_its_lease() -> None:
    held = Held()  # requests that wait on something else, as a render does
    app = guard(held, body_timeout=30, max_body_bytes=1 << 20, gate_slots=2, gate_lease=0.05)
    requests = [asyncio.create_task(call(app, "/render")) for _ in range(6)]
    await until(lambda: held.inside == 6)  # each lease ran out and let the next one in
    held.release.set()
    await asyncio.gather(*requests)


async def test_a_request_cut_short_while_waiting_answers_503() -> None:
    held = Held()
    app = guard(held, body_timeout=30, max_body_bytes=1 << 20, gate_slots=1, gate_lease=60)
    first = asyncio.create_task(call(app, "/a"))
    await until(lambda: held.inside == 1)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    waiting = asyncio.create_task(app(scope("/b"), receive, send))
    for _ in range(5):
        await asyncio.sleep(0)  # let it reach the gate
    assert not waiting.done() and held.inside == 1
    waiting.cancel()  # the server's stop ran out of grace time
    await asyncio.gather(waiting, return_exceptions=True)
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["title"] == "Stopping"
    held.release.set()
    await first
    assert await call(app, "/c") == (200, b"done")  # its slot was never taken


async def test_a_slot_is_given_back_once() -> None:
    gate = Gate(1, lease=0.2)
    release = await gate.enter()
    second = await asyncio.wait_for(gate.enter(), 10)  # in once the first lease ran out
    release()  # the end of the first request does not give a slot back a second time
    third = asyncio.create_task(gate.enter())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done()
    second()
    (await third)()
