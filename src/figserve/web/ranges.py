"""Byte ranges and preconditions of a download (RFC 9110, sections 13 and 14), on their own so
they are exact and tested by property.

- ``Range: bytes=...`` with one range, or several that overlap or touch (coalesced into one):
  ``206 Partial Content`` with ``Content-Range: bytes first-last/size``. A suffix range
  (``bytes=-500``) longer than the body gives the whole body, as a 206.
- Several ranges that stay apart after coalescing: the whole body, ``200`` (a server may ignore
  a Range; figserve does not send ``multipart/byteranges``).
- No range satisfiable (every one starts at or past the end, or a suffix of 0):
  ``416 Range Not Satisfiable`` with ``Content-Range: bytes */size``.
- A Range that is not valid ``bytes`` syntax, or of another unit, or of more than
  ``MAX_RANGES`` parts: ignored, the whole body.
- ``If-Range`` with the current strong ETag (or the exact Last-Modified date) lets the Range
  apply; any other value means the whole body.
- ``If-Match``/``If-Unmodified-Since`` that fail: 412; ``If-None-Match``/``If-Modified-Since``
  that match: 304.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

MAX_RANGES = 100
_SPEC = re.compile(r"([0-9]+)?-([0-9]+)?", re.ASCII)


@dataclass(frozen=True)
class Whole:
    """Send the whole body (200)."""


@dataclass(frozen=True)
class Part:
    """Send ``[start, end)`` of the body (206)."""

    start: int
    end: int


@dataclass(frozen=True)
class Unsatisfiable:
    """No range overlaps the body (416)."""


Selection = Whole | Part | Unsatisfiable


def select(header: str | None, size: int) -> Selection:
    """What a ``Range`` header asks of a body of ``size`` bytes."""
    if header is None:
        return Whole()
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return Whole()
    parts = [p.strip() for p in specs.split(",")]
    parts = [p for p in parts if p]  # empty list elements are allowed, and skipped
    if not parts or len(parts) > MAX_RANGES:
        return Whole()
    wanted: list[tuple[int, int]] = []  # satisfiable ranges, [start, end)
    for part in parts:
        match = _SPEC.fullmatch(part)
        if match is None or (match.group(1) is None and match.group(2) is None):
            return Whole()  # invalid: the whole Range is ignored
        first, last = match.group(1), match.group(2)
        if first is None:  # a suffix: the last N bytes
            length = int(last)
            if length > 0 and size > 0:
                wanted.append((max(0, size - length), size))
            continue
        start = int(first)
        if last is not None and int(last) < start:
            return Whole()
        if start < size:
            end = size if last is None else min(size, int(last) + 1)
            wanted.append((start, end))
    if not wanted:
        return Unsatisfiable()
    merged = _coalesce(wanted)
    if len(merged) > 1:
        return Whole()
    return Part(*merged[0])


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _tags(header: str) -> list[tuple[str, bool]]:
    """The entity tags of a list header, each with whether it is weak."""
    out = []
    for raw in re.findall(r'(W/)?("[^"]*")', header):
        out.append((raw[1], bool(raw[0])))
    return out


def _date(header: str | None) -> int | None:
    if not header:
        return None
    try:
        return int(parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True)
class Validators:
    """The body's strong ETag (quoted) and its modification time in whole seconds."""

    etag: str
    modified: int | None


def precondition(headers: dict[str, str], current: Validators) -> int | None:
    """412 or 304 when the preconditions say so (in the order RFC 9110 gives), else None."""
    if_match = headers.get("if-match")
    if if_match is not None:
        strong = [tag for tag, weak in _tags(if_match) if not weak]
        if if_match.strip() != "*" and current.etag not in strong:
            return 412
    elif current.modified is not None:
        since = _date(headers.get("if-unmodified-since"))
        if since is not None and current.modified > since:
            return 412
    if_none = headers.get("if-none-match")
    if if_none is not None:
        if if_none.strip() == "*" or current.etag in [tag for tag, _ in _tags(if_none)]:
            return 304
    elif current.modified is not None:
        since = _date(headers.get("if-modified-since"))
        if since is not None and current.modified <= since:
            return 304
    return None


def range_applies(headers: dict[str, str], current: Validators) -> bool:
    """Whether the Range may apply: no If-Range, or one that names the current body."""
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"'):
        return value == current.etag  # a strong comparison; weak tags never match
    if value.startswith("W/"):
        return False
    return current.modified is not None and _date(value) == current.modified
