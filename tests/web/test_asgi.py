"""The outer ASGI guard: WebSocket handshakes refused on every path, request bodies read against
a deadline. In process through Quart's test client, and on a real Hypercorn server, whose
WebSocket upgrades and slow sockets are what these defend against."""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart.testing.connections import WebsocketResponseError

from tests.support.live import LiveServer

from .conftest import BODY_TIMEOUT

DEADLINE = 0.3  # body_timeout of the in-process apps, in seconds
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
PATHS = ["/", "/fig/5_3", "/figures/normal.png", "/jobs", "/api/render", "/nothing", "/metrics"]


@pytest.fixture
def app_config(tmp_path: Path) -> dict:
    return {"warm_up": False, "jobs_dir": str(tmp_path / "jobs"), "body_timeout": DEADLINE}


# --- WebSocket -----------------------------------------------------------------------------------


async def refused(client, path: str) -> int:
    """The HTTP status a WebSocket handshake to ``path`` is answered with."""
    with pytest.raises(WebsocketResponseError) as info:
        async with asyncio.timeout(10), client.websocket(path) as ws:
            await ws.receive()
    problem = json.loads(await info.value.response.get_data())
    assert "WebSocket" in problem["detail"]
    return info.value.response.status_code


@pytest.mark.parametrize("path", PATHS)
async def test_websocket_handshakes_are_refused_without_a_log_line(client, caplog, path):
    caplog.set_level(logging.DEBUG)
    assert await refused(client, path) == 403
    assert [r.getMessage() for r in caplog.records] == []


@FAST
@given(
    # A path starting "//" would name a host to the test client, not a path to the app.
    path=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="?#"), max_size=40).map(
        lambda p: "/" + p.lstrip("/")
    ),
    query=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
async def test_a_websocket_to_any_path_is_refused(app, path, query):
    client = app.test_client()
    with pytest.raises(WebsocketResponseError) as info:
        async with asyncio.timeout(10), client.websocket(path, query_string=query) as ws:
            await ws.receive()
    assert info.value.response.status_code == 403


async def test_without_the_response_extension_the_handshake_is_closed(app):
    # Servers without the extension answer a close before accept with 403 themselves.
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/", "headers": [], "query_string": b""}
    await asyncio.wait_for(app(scope, receive, send), 10)
    assert sent == [{"type": "websocket.close", "code": 1008}]


# --- body deadline -------------------------------------------------------------------------------


async def unfinished(client, method: str, path: str, content_type: str, body: bytes) -> int:
    """Send part of a body and never the rest; the status of the answer."""
    started = time.monotonic()
    async with asyncio.timeout(10):
        connection = client.request(path, method=method, headers={"Content-Type": content_type})
        async with connection:
            await connection.send(body)
            await connection.receive()
    assert connection.status_code is not None
    if connection.status_code == 408:
        assert time.monotonic() - started >= DEADLINE
    return connection.status_code


BODY_ROUTES = [
    ("POST", "/api/render", "application/json", b'{"figure": "wav'),
    ("POST", "/api/plot", "multipart/form-data; boundary=x", b"--x\r\nContent-Dispo"),
    ("POST", "/jobs", "application/json", b'{"items": ['),
    ("POST", "/jobs", "application/x-www-form-urlencoded", b"figure=wa"),
    ("POST", "/jobs", "multipart/form-data; boundary=x", b"--x\r\n"),
]


@pytest.mark.parametrize(("method", "path", "content_type", "body"), BODY_ROUTES)
async def test_a_body_that_stops_arriving_is_408(client, method, path, content_type, body):
    assert await unfinished(client, method, path, content_type, body) == 408


@FAST
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "BREW"]),
    path=st.sampled_from([*PATHS, "/api/plot", "/gallery/waves", "/jobs/" + "a" * 32]),
    content_type=st.sampled_from(
        ["application/json", "multipart/form-data; boundary=x", "text/plain", ""]
    ),
    body=st.binary(min_size=1, max_size=50),
)
async def test_no_request_waits_for_its_body_past_the_deadline(
    app, method, path, content_type, body
):
    # Whatever the route: it answers without the body (404, 405, a page) or gives up at the
    # deadline; nothing keeps waiting.
    status = await unfinished(app.test_client(), method, path, content_type, body)
    assert 200 <= status < 500


async def test_a_body_that_arrives_in_time_is_not_cut_short(client):
    spec = json.dumps({"figure": "waves", "format": "svg"}).encode()
    async with asyncio.timeout(10):
        connection = client.request(
            "/api/render", method="POST", headers={"Content-Type": "application/json"}
        )
        async with connection:
            for byte in spec:
                await connection.send(bytes([byte]))
            await connection.send_complete()
    assert connection.status_code == 200


# --- on a real server ----------------------------------------------------------------------------


def raw_request(server: LiveServer, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(head.encode("latin-1"))
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def lines_until_marker(server: LiveServer, before: int) -> list[str]:
    """Server output since line ``before``, up to the access log line of a marker request."""
    marker = uuid.uuid4().hex
    sock = raw_request(server, f"GET /healthz?{marker} HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(sock)
    sock.close()
    server.wait_for(marker, timeout=30)
    lines = server.lines[before:]
    end = next(i for i, line in enumerate(lines) if marker in line)
    return lines[:end]


WS_HEAD = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.live
@pytest.mark.parametrize("path", ["/", "/fig/5_3", "/nothing", "/jobs"])
def test_live_websocket_upgrade_is_refused_with_one_log_line(web_server: LiveServer, path):
    before = len(web_server.lines)
    sock = raw_request(web_server, WS_HEAD.format(path=path))
    status, data = read_response(sock)
    sock.close()
    assert status == 403
    assert b"upgrade: websocket" not in data.lower()
    logged = lines_until_marker(web_server, before)
    assert len(logged) <= 1, logged  # the access log line, nothing else


@pytest.mark.live
def test_live_slow_bodies_are_cut_off_at_the_deadline(web_server: LiveServer):
    # Several connections each send a byte now and then, as a slowloris client of the body
    # would: every one is answered 408 at the deadline and closed.
    socks = [
        raw_request(
            web_server,
            "POST /api/render HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{",
        )
        for _ in range(8)
    ]
    started = time.monotonic()
    answered: dict[socket.socket, float] = {}
    while len(answered) < len(socks) and time.monotonic() - started < 20:
        for sock in socks:
            if sock not in answered:
                sock.sendall(b" ")
        readable, _, _ = select.select([s for s in socks if s not in answered], [], [], 0.2)
        for sock in readable:
            answered[sock] = time.monotonic() - started
    assert len(answered) == len(socks), "a slow body was never cut off"
    for sock, after in answered.items():
        status, data = read_response(sock)
        assert status == 408, data
        assert BODY_TIMEOUT - 0.5 <= after <= BODY_TIMEOUT + 5
        sock.settimeout(10)
        while sock.recv(65536):  # the rest of the answer, then the server closes
            pass
        sock.close()


@pytest.mark.live
def test_live_chunked_upload_past_the_limit_is_413(web_server: LiveServer):
    limit = 2 * 1024 * 1024  # the shipped FIGSERVE_MAX_BODY_BYTES
    head = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\r\n"
    )
    sock = raw_request(
        web_server,
        "POST /api/plot HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
    )
    sent = 0
    chunk = b"1,2\n" * 16384  # 64 KiB
    pieces = [head] + [chunk] * 1024  # 64 MiB in all, if nothing stops it
    try:
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break  # answered: stop sending
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, data = read_response(sock)
    sock.close()
    assert status == 413, data[-400:]
    assert sent < limit + 16 * 1024 * 1024  # what socket buffers hold, not the whole stream
