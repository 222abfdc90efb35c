"""Log lines that client input can neither break nor fake.

A path, a query or a header is the client's to choose: ``%0a`` in a path decodes to a line
break, ``\\x1b[31m`` to a colour, U+2028 to a line break in some viewers, and a path may be
megabytes long. Every record that figserve, Hypercorn (its access and error logs), Quart and
asyncio write passes a filter first:

- every character that is not printable (controls, format and bidirectional characters, line
  and paragraph separators, unassigned ones) is written as an escape (``\\x0a``, ``\\u2028``),
  so a record is one line;
- each value taken from a request is cut at ``VALUE_MAX`` characters and a message at
  ``MESSAGE_MAX``, saying how much was left out;
- in the access log, ``"`` and ``\\`` in values are escaped too, so no value can end the field
  it sits in;
- a traceback keeps its lines, each one escaped and starting with ``CONTINUATION``, so no line
  of it can pass for a record of its own.
"""

from __future__ import annotations

import logging
import numbers
import sys
import traceback
from collections.abc import Iterator, Mapping
from typing import IO, Any

VALUE_MAX = 512
MESSAGE_MAX = 4096
TRACEBACK_LINES = 200
CONTINUATION = "  | "
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Loggers whose records may carry client input, besides figserve's own.
LOGGERS = ("hypercorn.access", "hypercorn.error", "quart.app", "quart.serving", "asyncio")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(value: Any, limit: int = VALUE_MAX, *, quoted: bool = False) -> str:
    """``value`` as one printable line of at most ``limit`` characters (and a note of how many
    were left out); with ``quoted``, ``"`` and ``\\`` are escaped as well."""
    text = value if isinstance(value, str) else str(value)
    head = text[:limit]
    if head.isprintable() and not (quoted and ('"' in head or "\\" in head)):
        shown = len(head)
    else:
        pieces: list[str] = []
        size = shown = 0
        for char in head:
            if quoted and char in '"\\':
                piece = "\\" + char
            else:
                piece = char if char.isprintable() else _escape(char)
            if size + len(piece) > limit:
                break
            pieces.append(piece)
            size += len(piece)
            shown += 1
        head = "".join(pieces)
    cut = len(text) - shown
    return head if cut <= 0 else f"{head}...({cut} more)"


def _safe_arg(value: Any) -> Any:
    if value is None or isinstance(value, numbers.Number):
        return value  # %d and %f need numbers, and numbers are safe
    return clean(value)


class _SafeAtoms(Mapping[str, Any]):
    """Hypercorn's access log atoms, each value escaped and cut as it is read."""

    def __init__(self, atoms: Mapping[str, Any]) -> None:
        self._atoms = atoms

    def __getitem__(self, key: str) -> Any:
        value = self._atoms[key]
        return value if isinstance(value, numbers.Number) else clean(value, quoted=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._atoms)

    def __len__(self) -> int:
        return len(self._atoms)


def traceback_text(exc_info: Any) -> str:
    """A traceback as continuation lines: escaped, each starting with ``CONTINUATION``."""
    lines = "".join(traceback.format_exception(*exc_info)).splitlines()
    if len(lines) > TRACEBACK_LINES:
        left_out = len(lines) - TRACEBACK_LINES
        half = TRACEBACK_LINES // 2
        lines = [*lines[:half], f"...({left_out} lines)", *lines[-half:]]
    return "\n".join(CONTINUATION + clean(line, MESSAGE_MAX) for line in lines)


class SafeRecords(logging.Filter):
    """Makes a record safe to write (see the module's docstring); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_figserve_safe", False):
            return True  # another logger's filter did it already
        if isinstance(record.args, Mapping):
            record.args = _SafeAtoms(record.args)
        elif record.args:
            record.args = tuple(_safe_arg(a) for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a message and arguments that do not fit: show both, safely
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = clean(message, MESSAGE_MAX), None
        if record.exc_info and not record.exc_text:
            record.exc_text = traceback_text(record.exc_info)
        if record.stack_info:
            lines = record.stack_info.splitlines()[-TRACEBACK_LINES:]
            record.stack_info = "\n".join(CONTINUATION + clean(ln, MESSAGE_MAX) for ln in lines)
        record._figserve_safe = True
        return True


_FILTER = SafeRecords()


def handler(stream: IO[str] | None = None) -> logging.Handler:
    """figserve's log handler: safe records, one line each, on ``stream`` (standard error)."""
    out = logging.StreamHandler(stream if stream is not None else sys.stderr)
    out.setFormatter(logging.Formatter(FORMAT))
    out.addFilter(_FILTER)
    return out


def install() -> None:
    """Make the records of the servers' and libraries' loggers safe too (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
