"""Logs of a real server under arbitrary bytes in paths, queries and headers: every record is
one line (a traceback only adds continuation lines), escaped and bounded; nothing a client
sends can start a line of its own."""

from __future__ import annotations

import re
import socket
import string
import uuid
from collections.abc import Iterator
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from figserve.logsafe import CONTINUATION, MESSAGE_MAX
from tests.support.live import LiveServer, live_server
from tests.support.waiting import until_sync

pytestmark = pytest.mark.live

FIGSERVE_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) figserve[\w.]* "
)
HYPERCORN_LINE = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] "
)
LINE_MAX = MESSAGE_MAX + 200
RAW_QUERY = "".join(c for c in string.printable if c not in string.whitespace + "#")


@pytest.fixture(scope="module")
def logged_server() -> Iterator[LiveServer]:
    with live_server(env={"FIGSERVE_WARM_UP": "false"}) as server:
        yield server


def _send(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.binary(max_size=40)
    | st.sampled_from(
        [b"\n2026-01-01 00:00:00,000 ERROR figserve.web forged", b"\x1b[31m", "\u2028".encode()]
    ),
    query=st.binary(max_size=30).map(quote_from_bytes) | st.text(RAW_QUERY, max_size=30),
    agent=st.binary(min_size=1, max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b),
    long=st.sampled_from([0, 0, 20_000]),
)
@example(
    path=b"/x\n[2026-01-01 00:00:00 +0000] [1] [ERROR] forged",
    query='a"b\\c',
    agent=b"\x1b[2J",
    long=0,
)
def test_client_input_never_breaks_a_log_line(
    logged_server: LiveServer, path: bytes, query: str, agent: bytes, long: int
) -> None:
    mark = uuid.uuid4().hex
    # The marks come first, before anything a line may be cut at.
    target = f"/p/{mark}a{quote_from_bytes(path + b'x' * long)}?m={mark}q&{query}"
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
        + b"User-Agent: "
        + agent.strip(b" \t")
        + mark.encode()
        + b"u\r\n\r\n"
    )
    reply = _send(logged_server.port, request)
    handled = b"x-content-type-options" in reply.lower()  # figserve answered, not the parser
    if handled:  # figserve's line and the access line
        until_sync(lambda: sum(f"{mark}a" in ln for ln in logged_server.lines) >= 2, "logs", 10)
    lines = [line.rstrip("\n") for line in logged_server.lines]
    for line in lines:
        known = FIGSERVE_LINE.match(line) or HYPERCORN_LINE.match(line)
        assert known or line.startswith(CONTINUATION), line[:300]
        assert line.isprintable() and len(line) <= LINE_MAX, line[:300]
    mine = [line for line in lines if mark in line]
    # Whatever came after a line break the client sent would start a line of its own, without
    # the first mark; every line that names this request holds it.
    assert all(f"{mark}a" in line for line in mine), mine
    access = [line for line in mine if HYPERCORN_LINE.match(line)]
    assert len(access) == (1 if handled else 0), mine
    if handled and not long:
        assert f"{mark}q" in access[0] and f"{mark}u" in access[0]
    if long:
        assert all("more)" in line for line in mine)  # cut, saying so
