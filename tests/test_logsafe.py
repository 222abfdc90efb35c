"""Log lines client input can neither break nor fake: escaped, bounded, one line per record."""

from __future__ import annotations

import io
import logging
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from figserve.logsafe import CONTINUATION, MESSAGE_MAX, VALUE_MAX, SafeRecords, clean, handler

RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) figserve\.test ")


def test_controls_separators_and_colours_are_escaped() -> None:
    assert clean("/x\n2026-01-01 ERROR fake") == "/x\\x0a2026-01-01 ERROR fake"
    assert clean("evil\x1b[31mred\x7f\x85") == "evil\\x1b[31mred\\x7f\\x85"
    separators = "a\u2028b\u2029c\u202ed\u200be\ufeff"
    assert clean(separators) == "a\\u2028b\\u2029c\\u202ed\\u200be\\ufeff"
    assert clean("tab\there \U000e0001") == "tab\\x09here \\U000e0001"
    assert clean("plain /path?a=1&b=é ✓") == "plain /path?a=1&b=é ✓"


def test_quoted_values_cannot_end_their_field() -> None:
    assert clean('GET /a" 200 "b\\', quoted=True) == 'GET /a\\" 200 \\"b\\\\'
    assert clean('say "hi"') == 'say "hi"'


def test_long_values_are_cut_saying_how_much() -> None:
    assert clean("a" * 1000, 10) == "aaaaaaaaaa...(990 more)"
    assert clean("\n" * 100, 10) == "\\x0a\\x0a...(98 more)"


@settings(max_examples=300)
@given(st.text(), st.booleans())
def test_any_text_becomes_one_bounded_printable_line(text: str, quoted: bool) -> None:
    out = clean(text, 64, quoted=quoted)
    assert out.isprintable()
    assert len(out) <= 64 + len("...(99999999 more)")
    if text.isprintable() and len(text) <= 64 and not (quoted and ('"' in text or "\\" in text)):
        assert out == text


def _logged(*records: logging.LogRecord) -> list[str]:
    stream = io.StringIO()
    out = handler(stream)
    for record in records:
        out.handle(record)
    return stream.getvalue().splitlines()


def _record(msg: str, args: object = (), level: int = logging.INFO, exc: bool = False):
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\n2026-01-01 00:00:00,000 ERROR figserve.test forged")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("figserve.test", level, __file__, 1, msg, args, exc_info)


@settings(max_examples=200)
@given(st.lists(st.text(), min_size=1, max_size=3), st.booleans())
def test_every_record_is_one_line_and_a_traceback_only_continues_it(
    values: list[str], exc: bool
) -> None:
    fmt = " ".join(["path=%s", "detail=%r", "n=%d"][: len(values)])
    args = tuple(values[:2]) + ((7,) if len(values) == 3 else ())
    lines = _logged(_record(fmt, args, logging.ERROR, exc))
    assert RECORD.match(lines[0]), lines[0]
    assert all(line.startswith(CONTINUATION) for line in lines[1:])
    assert len(lines) == 1 or exc
    assert all(line.isprintable() and len(line) <= MESSAGE_MAX + 200 for line in lines)


def test_a_forged_line_in_an_exception_stays_a_continuation() -> None:
    first, *rest = _logged(_record("error status=500 path=%s", ("/x",), logging.ERROR, True))
    assert first.endswith("error status=500 path=/x")
    assert rest[0] == CONTINUATION + "Traceback (most recent call last):"
    assert rest[-2:] == [
        CONTINUATION + "ValueError: bad",
        CONTINUATION + "2026-01-01 00:00:00,000 ERROR figserve.test forged",
    ]


def test_mappings_numbers_and_broken_formats() -> None:
    atoms = _record('%(h)s "%(r)s" %(s)s %(D)dus', {"h": "c", "r": 'GET /"x\n', "s": 200, "D": 5})
    assert SafeRecords().filter(atoms)
    assert atoms.getMessage() == 'c "GET /\\"x\\x0a" 200 5us'
    broken = _record("%d items", ("many\n",))
    SafeRecords().filter(broken)
    assert "\n" not in broken.getMessage() and "many" in broken.getMessage()
    big = _record("path=%s", ("/" + "a" * 10 * VALUE_MAX,))
    SafeRecords().filter(big)
    assert big.getMessage().endswith(f"...({10 * VALUE_MAX + 1 - VALUE_MAX} more)")
