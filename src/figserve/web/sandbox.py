"""User pages (``FIGSERVE_PAGES``) run in a sandbox with bounds, so no page can hold a worker.

A page is rendered in a page thread (``pagecache.py``), never on the event loop, in Jinja's
immutable sandbox (no private attributes, no changing lists or dicts in place) with a budget
per render:

- **steps**: every loop turn, call, filter and output is a step; a render may take
  ``MAX_STEPS``. Loops are counted turn by turn (the compiled template asks the budget on each
  turn), so nested loops are bounded however their ranges are made.
- **time**: a render past ``page_timeout`` seconds stops at its next step.
- **size**: every value a page builds (by an operator, a call, a filter, a ``~`` or output) is
  counted against four times ``page_max_bytes``, and operations that multiply sizes
  (``"x" * n``, ``center``, ``replace``, ``join``, format widths, big powers) are checked before
  they run; the page itself may be at most ``page_max_bytes`` characters.

Past a bound the render raises ``PageTooComplex``; memory stays a small multiple of the size
budget, and a stopping server never waits on a page longer than its deadline. The same
compiler writes non-finite float constants (``1e400``) as valid Python, which Jinja does not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    TemplateError,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from .budget import (
    BUDGET,
    FILTER_CHECKS,
    Budget,
    PageLimits,
    PageTooComplex,
    check_binop,
    check_format,
    check_method,
    current,
    int_arg,
    size_of,
    stepped,
)

TEMPLATE_MAX_BYTES = 1 << 20  # characters of one template file

_CONTEXT = pass_context(lambda: None).jinja_pass_arg  # type: ignore[attr-defined]
_EVAL_CONTEXT = pass_eval_context(lambda: None).jinja_pass_arg  # type: ignore[attr-defined]
_ENVIRONMENT = pass_environment(lambda: None).jinja_pass_arg  # type: ignore[attr-defined]


def render_bounded(
    template: Any,
    context: dict[str, Any],
    limits: PageLimits,
    pause: Callable[[], None] | None = None,
) -> str:
    """Render ``template`` (of a ``BoundedEnvironment``) within ``limits``; ``pause`` is
    called every 16 steps (a page thread gives way to the event loop there)."""
    token = BUDGET.set(Budget(limits, pause))
    try:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > limits.max_bytes:
                raise PageTooComplex(
                    f"the page is longer than {limits.max_bytes:,} characters "
                    "(FIGSERVE_PAGE_MAX_BYTES)"
                )
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        BUDGET.reset(token)


def _guarded(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    kind = getattr(fn, "jinja_pass_arg", None)
    check = FILTER_CHECKS.get(name)

    # Context-passing, so Jinja never runs it at compile time, outside any budget.
    @pass_context
    @functools.wraps(fn, assigned=("__name__", "__doc__"), updated=())
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if check is not None:
            value, args = check(budget, value, args, kwargs)
        if kind is _CONTEXT:
            result = fn(context, value, *args, **kwargs)
        elif kind is _EVAL_CONTEXT:
            result = fn(context.eval_ctx, value, *args, **kwargs)
        elif kind is _ENVIRONMENT:
            result = fn(context.environment, value, *args, **kwargs)
        else:
            result = fn(value, *args, **kwargs)
        budget.charge(size_of(result))
        return result

    return guarded


@pass_context
def _loop_filter(context: Context, iterable: Any) -> Iterator[Any]:
    return stepped(iterable)


@pass_context
def _out_filter(context: Context, value: Any) -> Any:
    budget = current()
    budget.step()
    budget.charge(len(value) if isinstance(value, str) else len(str(value)))
    return value


@pass_context
def _text_filter(context: Context, value: Any, size: int) -> Any:
    current().charge(size)
    return value


@pass_context
def _size_filter(context: Context, value: Any) -> Any:
    budget = current()
    budget.step()
    budget.charge(size_of(value))
    return value


_INSTRUMENTS = {
    "_figserve_loop": _loop_filter,
    "_figserve_out": _out_filter,
    "_figserve_text": _text_filter,
    "_figserve_size": _size_filter,
}


def _filter(node: nodes.Expr, name: str, lineno: int, args: list | None = None) -> nodes.Filter:
    return nodes.Filter(node, name, args or [], [], None, None, lineno=lineno)


class _Instrument(NodeTransformer):
    """Puts the budget into a template's tree: every loop turn, ``~`` and output counts."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, "_figserve_loop", node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, "_figserve_size", node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        text = 0
        children: list[nodes.Node] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                text += len(child.data)
                children.append(child)
            else:
                children.append(_filter(child, "_figserve_out", child.lineno))
        if text:
            charge = [nodes.Const(text, lineno=node.lineno)]
            children.append(
                _filter(nodes.Const("", lineno=node.lineno), "_figserve_text", 0, charge)
            )
        node.nodes = children
        return node


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Instrument().visit(node)
        node.set_environment(self.environment)
        super().visit_Template(node, frame)

    def visit_Const(self, node: nodes.Const, frame: Frame) -> None:
        value = node.as_const(frame.eval_ctx)
        if _finite(value):
            super().visit_Const(node, frame)
        else:
            self.write(_literal(value))  # Jinja would write inf or nan: names Python lacks


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, complex):
        return math.isfinite(value.real) and math.isfinite(value.imag)
    if isinstance(value, list | tuple | set | frozenset):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(k) and _finite(v) for k, v in value.items())
    return True


def _literal(value: Any) -> str:
    """Python source for a constant Jinja folded, non-finite floats included."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, complex):
        return f"complex({_literal(value.real)}, {_literal(value.imag)})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(_literal(v) + ", " for v in value) + ")"
    if isinstance(value, set | frozenset):
        items = ", ".join(_literal(v) for v in value)
        return f"{type(value).__name__}([{items}])"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


class _SizedLoader(BaseLoader):
    """A loader whose templates are at most ``TEMPLATE_MAX_BYTES`` characters."""

    def __init__(self, loader: BaseLoader) -> None:
        self.loader = loader

    def get_source(self, environment: Environment, template: str) -> Any:
        source, filename, uptodate = self.loader.get_source(environment, template)
        if len(source) > TEMPLATE_MAX_BYTES:
            raise TemplateError(
                f"{filename or template}: {len(source):,} characters; a page template may "
                f"have at most {TEMPLATE_MAX_BYTES:,}"
            )
        return source, filename, uptodate

    def list_templates(self) -> list[str]:
        return self.loader.list_templates()


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if int_arg(n) > 100 or int_arg(max) > 1000:
        raise PageTooComplex("lipsum() of more than 100 paragraphs or 1000 words each")
    return generate_lorem_ipsum(n, html, min, max)


def _int(value: Any, default: int = 0, base: int = 10) -> int:
    """Jinja's ``int`` filter, which also gives the default for infinity (it raises there)."""
    try:
        return DEFAULT_FILTERS["int"](value, default, base)
    except OverflowError:
        return default


def _autoescape(name: str | None) -> bool:
    return name is None or name.endswith((".html", ".htm", ".xml", ".xhtml"))


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with a budget in every render (see the module's docstring)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(
        self,
        loader: BaseLoader,
        *,
        globals: dict[str, Any],
        filters: dict[str, Callable[..., Any]],
    ) -> None:
        super().__init__(loader=_SizedLoader(loader), autoescape=_autoescape, auto_reload=True)
        every = {**DEFAULT_FILTERS, "int": _int, **filters}
        self.filters = {name: _guarded(name, fn) for name, fn in every.items()}
        self.filters.update(_INSTRUMENTS)
        self.globals.update(lipsum=_lipsum, **globals)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.step()
        check_binop(budget, operator, left, right)
        result = super().call_binop(context, operator, left, right)
        budget.charge(size_of(result))
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if isinstance(__obj, LoopContext) and args:
            args = (stepped(args[0]), *args[1:])  # a recursive loop's next level
        else:
            args = check_method(budget, __obj, args)
        result = super().call(__context, __obj, *args, **kwargs)
        budget.charge(size_of(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is not None:
            check_format(value.__self__, "{}")
        return wrapper
