"""The wire between a worker and its render processes, checked at every step.

Tasks go to a render process as framed pickles ``(request id, task, png level)``; replies come
back as framed pickles ``(request id, pid, status, value, meta, cpu seconds, rss bytes)``. A frame
is a magic word, a length and the payload. The worker trusts nothing in a reply: the frame must be
well formed and bounded, the payload must unpickle as plain data only (no classes, so a process
that runs a figure can never make the worker run code), and the reply must echo the request id
the worker sent and come from the process the worker sent it to. Anything else is a
``ProtocolError``: the process is replaced and the request answered as a failed render.

Control messages between a worker and its fork server go over a ``SOCK_SEQPACKET`` socket, one
pickle per packet with at most one file descriptor.
"""

from __future__ import annotations

import io
import pickle
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple


@dataclass(frozen=True)
class SpawnOptions:
    """What a render process is started with (sent to the fork server)."""

    nice: int = 0  # added to the render process's niceness (background work)
    memory_bytes: int = 0  # address space a render process may add past its start; 0: no cap
    warm_figures: int = 0  # drawn figures a render process may keep to update (0: none)


MAGIC = b"FSR1"
_HEADER = struct.Struct(">4sQ")
# No reply of a render process comes near this (images are bounded by max_pixels and the
# process's memory cap); a larger length is garbage, not a message.
MAX_FRAME = 1 << 30
CONTROL_MAX = 1 << 20  # bytes of one control message (module lists, a tiny warm-up job)
# Types a reply may hold, to any depth (replies are images, sizes, versions and messages).
_PLAIN = (bytes, str, int, float, bool, type(None))
_CONTAINERS = (tuple, list)
_MAX_DEPTH = 8


class ProtocolError(Exception):
    """The peer sent something that is not the message it owed."""


# -- frames ---------------------------------------------------------------------------------


def send_obj(sock: socket.socket, obj: Any) -> None:
    send_frame(sock, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def send_frame(sock: socket.socket, payload: bytes, deadline: float | None = None) -> None:
    """Send one frame; ``TimeoutError`` past ``deadline`` (a ``time.monotonic()`` value; None:
    wait as long as it takes)."""
    if deadline is None:
        sock.settimeout(None)
    else:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
    header = _HEADER.pack(MAGIC, len(payload))
    if len(payload) < 65536:
        sock.sendall(header + payload)  # one write: a small reply never arrives in two parts
    else:
        sock.sendall(header)
        sock.sendall(payload)


def recv_frame(sock: socket.socket, deadline: float | None = None) -> bytearray:
    """The next frame's payload; ``EOFError`` when the peer is gone, ``TimeoutError`` past
    ``deadline`` (a ``time.monotonic()`` value), ``ProtocolError`` for a malformed header."""
    magic, size = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if magic != MAGIC:
        raise ProtocolError(f"a frame starts with {bytes(magic)!r}, not {MAGIC!r}")
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes is longer than any message")
    return _recv_exact(sock, size, deadline)


def recv_obj(sock: socket.socket, deadline: float | None = None) -> Any:
    """The next message from a trusted peer (the worker, in a render process)."""
    return pickle.loads(recv_frame(sock, deadline))


def recv_plain(sock: socket.socket, deadline: float | None = None) -> Any:
    """The next message from an untrusted peer (a render process): plain data only."""
    stream = io.BytesIO(recv_frame(sock, deadline))
    try:
        message = _PlainUnpickler(stream).load()
    except Exception as exc:  # any way a payload can be garbage
        raise ProtocolError(f"a frame does not hold a message ({type(exc).__name__})") from None
    if stream.tell() != len(stream.getbuffer()):
        raise ProtocolError("a frame holds more than one message")
    return message


def waiting(sock: socket.socket) -> Literal["nothing", "data", "end"]:
    """What waits to be read, without waiting: nothing, bytes, or the end of the stream.

    Between tasks, and after a reply, a render process owes nothing: bytes are a surprise.
    """
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return "nothing"
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return "data" if sock.recv(1, socket.MSG_PEEK) else "end"
    except BlockingIOError:
        return "nothing"
    except OSError:
        return "end"
    finally:
        sock.settimeout(timeout)  # a task is sent next, in blocking mode


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[got:])
        except ConnectionResetError:
            n = 0
        if n == 0:
            raise EOFError
        got += n
    return buf


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def is_plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain data a reply may carry (and ``recv_plain`` accepts)."""
    if isinstance(value, _PLAIN) and type(value) in _PLAIN:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if type(value) in _CONTAINERS:
        return all(is_plain(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and is_plain(v, depth + 1) for k, v in value.items())
    return False


# -- messages -------------------------------------------------------------------------------


class Reply(NamedTuple):
    """A render process's answer to one task, checked against the task it answers."""

    status: str  # "ok", "error" (the task raised) or "memory" (it ran out of its cap)
    value: Any
    meta: dict[str, Any]  # what the task and the process's checks have to say (see process.py)
    cpu_seconds: float  # the process's CPU time so far
    rss_bytes: int


_STATUSES = frozenset({"ok", "error", "memory"})


def reply_for(message: Any, request_id: int, pid: int) -> Reply:
    """``message`` as the reply to request ``request_id`` sent to process ``pid``, or a
    ``ProtocolError`` that says what is wrong with it."""
    if type(message) is not tuple or len(message) != 7:
        raise ProtocolError("a reply is not a 7-tuple")
    rid, sender, status, value, meta, cpu, rss = message
    if sender != pid:
        raise ProtocolError(f"a reply came from process {sender!r}, not {pid}")
    if rid != request_id:
        raise ProtocolError(f"a reply answers request {rid!r}, not {request_id}")
    if status not in _STATUSES or type(meta) is not dict:
        raise ProtocolError(f"a reply has status {status!r}")
    if type(cpu) is not float or type(rss) is not int:
        raise ProtocolError("a reply's accounting is not numbers")
    return Reply(status, value, meta, cpu, rss)


# -- control messages (worker <-> fork server) ----------------------------------------------


def send_control(sock: socket.socket, obj: Any, fd: int | None = None) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if fd is None:
        sock.sendmsg([data])
    else:
        socket.send_fds(sock, [data], [fd])


def recv_control(sock: socket.socket) -> tuple[Any, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, CONTROL_MAX, 1)
    if not data:
        raise EOFError
    return pickle.loads(data), fds
