"""A small HTTP/1.1 client on ``http.client`` in threads: a page's images fetched over a few
keep-alive connections opened at once, as a browser does, and single requests."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from figserve.web import owner

from .server import HOST

# What Chromium sends for an <img>: figserve answers errors to it with an SVG image.
IMG_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
# Response headers that name the server process that answered, if the server sends one.
WORKER_HEADERS = ("x-figserve-worker", "x-worker-pid")
MAX_CONNECTIONS = 500


@dataclass(frozen=True)
class Fetch:
    path: str
    status: int  # 0: no response (the connection failed)
    bytes: int
    end_s: float  # since the first connection was opened
    local_port: int  # the client's end of the connection, as the server logs it
    connection: int
    worker: str | None  # from a worker header, if the server sends one
    retry_after: str | None
    error: str | None


def fetch_together(
    port: int,
    paths: list[str],
    connections: int,
    timeout: float = 30,
    check: Callable[[bytes], str | None] | None = None,
) -> tuple[float, list[Fetch]]:
    """Open ``connections`` connections at the same moment and fetch ``paths`` over them, each
    connection taking the next path once its previous response is in. ``check`` looks at each
    200 body and returns what is wrong with it, if anything (kept as the fetch's ``error``).

    Returns the seconds from the first connection attempt to the last response, and each fetch.
    """
    if not 0 < connections <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be 1-{MAX_CONNECTIONS}")
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for p in paths:
        todo.put(p)
    fetches: list[Fetch] = []
    starts: list[float] = []
    lock = threading.Lock()
    gate = threading.Barrier(connections)

    def run(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
        local_port = 0
        gate.wait()
        t0 = time.perf_counter()
        with lock:
            starts.append(t0)
        path = None
        try:
            conn.connect()
            local_port = conn.sock.getsockname()[1]
            while True:
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    break
                conn.request("GET", path, headers={"Accept": IMG_ACCEPT})
                resp = conn.getresponse()
                body = resp.read()
                end = time.perf_counter()
                worker = next((v for h in WORKER_HEADERS if (v := resp.getheader(h))), None)
                problem = check(body) if check is not None and resp.status == 200 else None
                fetch = Fetch(
                    path, resp.status, len(body), end, local_port, index, worker,
                    resp.getheader("Retry-After"), problem,
                )  # fmt: skip
                with lock:
                    fetches.append(fetch)
                path = None
        except (OSError, http.client.HTTPException) as exc:
            if path is not None:
                failed = Fetch(
                    path, 0, 0, time.perf_counter(), local_port, index, None, None,
                    type(exc).__name__,
                )  # fmt: skip
                with lock:
                    fetches.append(failed)
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = min(starts)
    out = [
        Fetch(f.path, f.status, f.bytes, f.end_s - first, f.local_port, f.connection, f.worker,
              f.retry_after, f.error)
        for f in fetches
    ]  # fmt: skip
    # Paths no connection got to (every connection failed first) count as failed too.
    while True:
        try:
            out.append(Fetch(todo.get_nowait(), 0, 0, 0.0, 0, -1, None, None, "not sent"))
        except queue.Empty:
            break
    wall = max((f.end_s for f in out), default=0.0)
    return wall, out


# The owner cookie the server issued with the run's first report (reports are private to the
# client that started them); kept and sent with every later request, as a browser would.
_owner = {"cookie": ""}


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """One request on a connection of its own; a JSON ``body`` is sent as JSON."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Accept": "application/json"}
        if _owner["cookie"]:
            headers["Cookie"] = _owner["cookie"]
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        for header in resp.headers.get_all("Set-Cookie") or []:
            if header.startswith(owner.COOKIE + "="):
                _owner["cookie"] = header.split(";", 1)[0]
        return resp.status, resp.read()
    finally:
        conn.close()


def get_json(port: int, path: str) -> Any:
    status, data = request(port, "GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {data[:200]!r}")
    return json.loads(data)
