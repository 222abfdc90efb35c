"""A load generator in a process of its own, so its work never delays the test's own timing:

    python -m tests.support.flood PORT SECONDS PATH=CONNECTIONS [PATH=CONNECTIONS ...]

Each connection sends ``GET PATH`` over HTTP/1.1 keep-alive, one request at a time, until
``SECONDS`` have passed (a ``{n}`` in PATH becomes a number of its own per request, so every
request can be a cache miss). It prints one JSON line: per path, the statuses counted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

MAX_REQUESTS = 200_000  # per run, whatever the time: the loop is bounded in count too


async def _connection(
    port: int, path: str, until: float, counts: Counter[str], numbers: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until and sum(counts.values()) < MAX_REQUESTS:
            numbers[0] += 1
            target = path.replace("{n}", str(numbers[0]))
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1].decode()
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"connection" and b"close" in value.lower():
                    close = True
            await reader.readexactly(length)
            counts[status] += 1
            if close:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        counts["dropped"] += 1
    finally:
        writer.close()


async def _main(port: int, seconds: float, plan: list[tuple[str, int]]) -> dict[str, dict]:
    until = time.monotonic() + seconds
    results: dict[str, Counter[str]] = {path: Counter() for path, _ in plan}
    numbers = [0]
    tasks = [
        _connection(port, path, until, results[path], numbers)
        for path, connections in plan
        for _ in range(connections)
    ]
    await asyncio.gather(*tasks)
    return {path: dict(counts) for path, counts in results.items()}


def main(argv: list[str]) -> None:
    port, seconds = int(argv[0]), float(argv[1])
    plan = []
    for item in argv[2:]:
        path, _, connections = item.rpartition("=")
        plan.append((path, int(connections)))
    print(json.dumps(asyncio.run(_main(port, seconds, plan))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
