"""The budget of one page render: steps, time and the size of what it builds.

``sandbox.py`` asks it at every loop turn, call, filter, operator, ``~`` and output of a user's
page; the checks here refuse an operation that would build something over budget before it
runs (``"x" * n``, ``center``, ``replace``, ``join``, format widths, big powers).
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import SecurityError

MAX_STEPS = 1_000_000
FORMAT_NUMBER_MAX = 1000  # a width or precision in a format string
INT_BITS_MAX = 8192  # about 2,500 decimal digits
ITEMS_MAX = 100_000  # list sizes a filter argument may ask for (batch, slice)

# A tuple, not a union: isinstance() with a union is several times slower, and this runs for
# every value a page builds.
_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_TEXT = (str, bytes)
_PERCENT = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(?P<width>\*|[0-9]+)?(?:\.(?P<prec>\*|[0-9]+))?[hlL]?."
)
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>[0-9]*)[_,]?(?:\.(?P<prec>[0-9]+))?")


@dataclass(frozen=True)
class PageLimits:
    timeout: float  # seconds of one render
    max_bytes: int  # characters of one page
    steps: int = MAX_STEPS

    @property
    def work(self) -> int:
        """Characters of all values one render may build, output included."""
        return 4 * self.max_bytes


class PageTooComplex(Exception):
    """A render went past one of its bounds; the message says which."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # past its deadline: another try may fit


class Budget:
    __slots__ = ("deadline", "limits", "pause", "steps", "work")

    def __init__(self, limits: PageLimits, pause: Callable[[], None] | None = None) -> None:
        self.limits = limits
        self.pause = pause  # asked every 16 steps: lets the event loop's thread run first
        self.deadline = time.monotonic() + limits.timeout
        self.steps = limits.steps
        self.work = limits.work

    def step(self) -> None:
        self.steps -= 1
        if self.steps & 15 == 0:
            if self.steps < 0:
                raise PageTooComplex(
                    f"it took more than {self.limits.steps:,} steps (loop turns, calls, "
                    "filters and outputs)"
                )
            if time.monotonic() > self.deadline:
                raise PageTooComplex(
                    f"it took longer than {self.limits.timeout:g} s (FIGSERVE_PAGE_TIMEOUT)",
                    transient=True,
                )
            if self.pause is not None:
                self.pause()

    def expect(self, size: int) -> None:
        """Refuse an operation before it builds a value of ``size`` characters over budget."""
        if size > self.work:
            raise PageTooComplex(
                f"it would build a value of {size:,} characters; a page may build "
                f"{self.limits.work:,} in all (4 x FIGSERVE_PAGE_MAX_BYTES)"
            )

    def charge(self, size: int) -> None:
        self.work -= size
        if self.work < 0:
            raise PageTooComplex(
                f"it built more than {self.limits.work:,} characters of values "
                "(4 x FIGSERVE_PAGE_MAX_BYTES)"
            )


BUDGET: ContextVar[Budget | None] = ContextVar("figserve_page_budget", default=None)


def current() -> Budget:
    budget = BUDGET.get()
    if budget is None:  # fail closed: a bounded template never runs unbounded
        raise SecurityError("a page template ran outside a bounded render")
    return budget


def size_of(value: Any) -> int:
    if isinstance(value, _SIZED):
        return len(value)
    return 0


# -- checks before an operation builds something big ----------------------------------------


def check_format(text: str, style: str) -> None:
    """Refuse format strings whose widths could build huge strings (``%0999999999d``)."""
    numbers: list[str | None] = []
    if style == "%":
        for match in _PERCENT.finditer(text):
            numbers += [match.group("width"), match.group("prec")]
    else:
        for _, field, spec, _ in string.Formatter().parse(text):
            if field is None:
                continue
            if spec and "{" in spec:
                raise SecurityError("a format spec in a page may not hold a placeholder")
            match = _SPEC.match(spec or "")
            if match:
                numbers += [match.group("width"), match.group("prec")]
    for number in numbers:
        if number == "*":
            raise SecurityError("a format in a page may not take its width from an argument")
        if number and int(number) > FORMAT_NUMBER_MAX:
            raise PageTooComplex(f"a format width of {int(number):,} (at most {FORMAT_NUMBER_MAX})")


def int_arg(value: Any) -> int:
    return value if isinstance(value, int) else 0


def check_binop(budget: Budget, operator: str, left: Any, right: Any) -> None:
    sequences = (str, bytes, list, tuple)
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(count, int):
                budget.expect(len(seq) * max(count, 0))
                return
        both = isinstance(left, int) and isinstance(right, int)
        if both and left.bit_length() + right.bit_length() > INT_BITS_MAX:
            raise PageTooComplex(f"a number of more than {INT_BITS_MAX} bits")
    elif operator == "**":
        both = isinstance(left, int) and isinstance(right, int)
        if both and right > 0 and abs(left) > 1 and left.bit_length() * right > INT_BITS_MAX:
            raise PageTooComplex(f"a number of more than {INT_BITS_MAX} bits")
    elif operator == "+":
        if isinstance(left, sequences) and isinstance(right, sequences):
            budget.expect(len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        check_format(left, "%")


def _replacesize_of(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not (isinstance(text, _TEXT) and isinstance(old, type(text))):
        return 0
    if not isinstance(new, _TEXT):
        return 0
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(text) + times * max(0, len(new) - len(old))


def check_method(budget: Budget, method: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Check a call of a method of text before it runs; the arguments to call it with."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, int) and not isinstance(owner, bool) and name == "to_bytes":
        budget.expect(int_arg(args[0]) if args else 1)
    if not isinstance(owner, _TEXT):
        return args
    if name in {"translate", "maketrans"}:
        raise SecurityError(f"{name}() is not available in pages")
    if name in {"center", "ljust", "rjust", "zfill"} and args:
        budget.expect(int_arg(args[0]))
    elif name == "expandtabs":
        budget.expect(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * 100)
        if args and int_arg(args[0]) > 100:
            raise PageTooComplex("a tab size of more than 100")
    elif name == "replace" and len(args) >= 2:
        budget.expect(_replacesize_of(owner, *args[:3]))
    elif name == "join" and args:
        items = materialize(budget, args[0])
        budget.expect(sum(size_of(i) for i in items) + len(owner) * len(items))
        return (items, *args[1:])
    return args


def materialize(budget: Budget, iterable: Any) -> list[Any]:
    items = []
    for item in iterable:
        budget.step()
        items.append(item)
    return items


def stepped(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current()
    for item in iterable:
        budget.step()
        yield item


# -- filters: every one counted, the ones that multiply sizes checked first -------------------

FilterCheck = Callable[[Budget, Any, tuple[Any, ...], dict[str, Any]], tuple[Any, tuple[Any, ...]]]


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _center(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    budget.expect(int_arg(_arg(args, kwargs, 0, "width", 80)))
    return value, args


def _indent(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    width = _arg(args, kwargs, 0, "width", 4)
    each = len(width) if isinstance(width, str) else int_arg(width)
    text = str(value)
    budget.expect(len(text) + (text.count("\n") + 1) * each)
    return value, args


def _replace(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
    count = _arg(args, kwargs, 2, "count", None)
    budget.expect(_replacesize_of(str(value), str(old), str(new), -1 if count is None else count))
    return value, args


def _format(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    check_format(str(value), "%")
    return value, args


def _join(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    items = materialize(budget, value)
    joiner = str(_arg(args, kwargs, 0, "d", ""))
    budget.expect(sum(size_of(i) or 20 for i in items) + len(joiner) * len(items))
    return items, args


def _wordwrap(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    width = max(1, int_arg(_arg(args, kwargs, 0, "width", 79)))
    wrap = _arg(args, kwargs, 2, "wrapstring", None)
    text = str(value)
    budget.expect(len(text) + (len(text) // width + 1) * len(str(wrap or "\n")))
    return value, args


def _count_arg(name: str, index: int) -> FilterCheck:
    def check(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
        if int_arg(_arg(args, kwargs, index, name, 0)) > ITEMS_MAX:
            raise PageTooComplex(f"{name} of more than {ITEMS_MAX:,}")
        return value, args

    return check


def _sum(budget: Budget, value: Any, args: tuple, kwargs: dict) -> tuple[Any, tuple]:
    start = _arg(args, kwargs, 1, "start", 0)
    if not isinstance(start, int | float):
        raise SecurityError("sum() in a page adds numbers only")
    return value, args


FILTER_CHECKS: dict[str, FilterCheck] = {
    "center": _center,
    "indent": _indent,
    "replace": _replace,
    "format": _format,
    "join": _join,
    "wordwrap": _wordwrap,
    "batch": _count_arg("linecount", 0),
    "slice": _count_arg("slices", 0),
    "sum": _sum,
}
