"""HTTP/2 (h2c, prior knowledge) clients that misbehave, bounded in time and count:

- ``never_reads``: connections that open their streams with a window of 0 and never read, so
  every response waits on flow control for ever;
- ``rapid_reset``: streams opened and reset at once, thousands per connection;
- ``flood``: pings and settings changes, thousands per connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import h2.config
import h2.connection
import h2.settings

PATHS = ["/", "/docs", "/figures/waves.png", "/figures/histogram.png?seed={n}"]
MAX_CONNECTIONS = 400  # per kind of abuse, whatever the time


def _connect(port: int, window: int = 65535) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
    )
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _headers(port: int, n: int) -> list[tuple[str, str]]:
    path = PATHS[n % len(PATHS)].format(n=n)
    return [
        (":method", "GET"),
        (":path", path),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
    ]


def never_reads(port: int, until: float, held: list[socket.socket]) -> None:
    for _ in range(MAX_CONNECTIONS):
        if time.monotonic() > until:
            return
        with contextlib.suppress(OSError, h2.exceptions.H2Error):
            sock, conn = _connect(port, window=0)
            held.append(sock)
            for n in range(99):
                conn.send_headers(
                    conn.get_next_available_stream_id(), _headers(port, n), end_stream=True
                )
            sock.sendall(conn.data_to_send())


def rapid_reset(port: int, until: float) -> None:
    for _ in range(MAX_CONNECTIONS):
        if time.monotonic() > until:
            return
        with contextlib.suppress(OSError, h2.exceptions.H2Error):
            sock, conn = _connect(port)
            with sock:
                for n in range(1000):
                    stream = conn.get_next_available_stream_id()
                    conn.send_headers(stream, _headers(port, n), end_stream=True)
                    conn.reset_stream(stream)
                    if n % 50 == 49:
                        sock.sendall(conn.data_to_send())


def flood(port: int, until: float) -> None:
    for _ in range(MAX_CONNECTIONS):
        if time.monotonic() > until:
            return
        with contextlib.suppress(OSError, h2.exceptions.H2Error):
            sock, conn = _connect(port)
            with sock:
                for n in range(2000):
                    conn.ping(os.urandom(8))
                    if n % 100 == 0:
                        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: n})
                sock.sendall(conn.data_to_send())


def abuse(port: int, seconds: float) -> list[socket.socket]:
    """Run every kind of abuse for ``seconds``; the never-read connections, still open."""
    until = time.monotonic() + seconds
    held: list[socket.socket] = []
    threads = [
        threading.Thread(target=never_reads, args=(port, until, held)),
        threading.Thread(target=rapid_reset, args=(port, until)),
        threading.Thread(target=rapid_reset, args=(port, until)),
        threading.Thread(target=flood, args=(port, until)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return held
