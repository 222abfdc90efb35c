"""The page sandbox under generated templates: whatever a template asks, its render ends by the
deadline, keeps to the size budget, and fails only as a page may fail."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jinja2 import DictLoader, TemplateError
from jinja2.sandbox import SecurityError

from figserve.web.sandbox import BoundedEnvironment, PageLimits, PageTooComplex, render_bounded

LIMITS = PageLimits(timeout=0.5, max_bytes=64 * 1024)
# What a page may fail with: its bounds, and the errors of its own code.
PAGE_ERRORS = (
    PageTooComplex,
    TemplateError,
    SecurityError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    RecursionError,
)

LITERALS = [
    "0",
    "1",
    "7",
    "-3",
    "100000",
    "10**9",
    "2**64",
    "0.5",
    "1e400",
    "-1e400",
    "1e308",
    "'x'",
    "'ab'",
    "''",
    "'%d'",
    "'%0999d'",
    "'{:>50}'",
    "[1, 2, 3]",
    "range(1000)",
    "range(100000)",
    "a",
    "b",
    "ns.s",
]
FILTERS = [
    "center(100000)",
    "center(1000000000)",
    "replace('x', ns.s)",
    "join",
    "join(ns.s)",
    "int",
    "float",
    "string",
    "length",
    "list",
    "first",
    "sum",
    "batch(1000)",
    "indent(1000)",
    "wordwrap(1)",
    "format(1)",
    "round",
    "abs",
    "reverse",
    "unique",
    "sort",
    "max",
    "tojson",
    "title",
    "truncate(10)",
]
OPERATORS = ["+", "-", "*", "/", "//", "%", "**", "~"]


def expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        st.sampled_from(LITERALS),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(OPERATORS), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]}|{t[1]})"),
            st.tuples(inner, st.sampled_from(["upper", "center", "replace", "join"])).map(
                lambda t: (
                    f"({t[0]}).{t[1]}"
                    + (
                        "(ns.s)"
                        if t[1] == "join"
                        else "(100000)"
                        if t[1] == "center"
                        else "('x', 'yy')"
                        if t[1] == "replace"
                        else "()"
                    )
                )
            ),
        ),
        max_leaves=6,
    )


def statements() -> st.SearchStrategy[str]:
    expr = expressions()
    return st.recursive(
        st.one_of(
            expr.map(lambda e: f"{{{{ {e} }}}}"),
            expr.map(lambda e: f"{{% set ns.s = {e} %}}"),
            st.just("text "),
        ),
        lambda inner: st.one_of(
            st.tuples(st.sampled_from("ab"), expr, st.lists(inner, max_size=3)).map(
                lambda t: f"{{% for {t[0]} in {t[1]} %}}{''.join(t[2])}{{% endfor %}}"
            ),
            st.tuples(expr, st.lists(inner, max_size=3)).map(
                lambda t: f"{{% if {t[0]} %}}{''.join(t[1])}{{% endif %}}"
            ),
        ),
        max_leaves=8,
    )


def render(source: str) -> tuple[str | None, BaseException | None]:
    env = BoundedEnvironment(DictLoader({"t": source}), globals={}, filters={})
    try:
        template = env.get_template("t")
    except TemplateError as exc:
        return None, exc
    context = {"a": 3, "b": "b"}
    prefix = "{% set ns = namespace(s='x') %}"
    template = env.from_string(prefix + source)
    try:
        return render_bounded(template, context, LIMITS), None
    except PAGE_ERRORS as exc:
        return None, exc


@pytest.mark.property
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(statements(), min_size=1, max_size=4).map("".join))
@example("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
@example("{% for a in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
@example("{{ (ns.s * 100000)|replace('x', ns.s * 100000) }}")
@example("{{ 1e400 }}{{ [1e400]|max }}{{ 1e400|int }}")
def test_any_template_ends_in_time_within_its_budget(source: str) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        html, error = render(source)
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert took < LIMITS.timeout + 1.0, (took, source)
    assert peak < 64 * LIMITS.work, (peak, source)  # a small multiple of its budget
    if error is None:
        assert html is not None and len(html) <= LIMITS.max_bytes
    else:
        assert not isinstance(error, MemoryError)


def test_a_page_stops_at_its_deadline_in_its_thread() -> None:
    # The deadline holds in a page thread as on any other: the budget belongs to the render.
    env = BoundedEnvironment(
        DictLoader(
            {
                "t": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                "{% endmacro %}{{ f(60) }}"
            }
        ),
        globals={},
        filters={},
    )
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            render_bounded(env.get_template("t"), {}, LIMITS)
        except PageTooComplex as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < LIMITS.timeout + 1.0
    assert outcome and outcome[0].transient


def test_a_template_cannot_run_outside_a_bounded_render() -> None:
    env = BoundedEnvironment(
        DictLoader({"t": "{% for a in [1] %}{{ a }}{% endfor %}"}), globals={}, filters={}
    )
    with pytest.raises(SecurityError, match="outside a bounded render"):
        env.get_template("t").render()
