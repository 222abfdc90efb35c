"""JSON values validated with JSON's own types.

JSON has one kind of number; JSON Schema calls a number without a fraction an integer, whether
it is written ``136`` or ``136.0``. Pydantic's strict mode refuses ``136.0`` for an ``int``, and
its lax mode would also take ``"136"`` and ``true``, which the schema forbids. ``strict_json``
is strict mode with JSON Schema's integers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


def strict_json(model: type[ModelT], value: Any) -> ModelT:
    """``model`` validated from JSON values with JSON's own types, strictly: an integer field
    takes a number without a fraction (``136`` or ``136.0``, the same integer in JSON Schema),
    never ``136.5``, ``true`` or ``"136"``; a number field takes any number; text is text.

    Pydantic's strict mode refuses ``136.0`` for ``int`` and its lax mode takes ``"136"`` and
    ``true``; so validate strictly, and where (only where) an integer was expected and a whole
    float came, validate again with that value as an ``int``."""
    try:
        return model.model_validate(value, strict=True)
    except ValidationError as exc:
        fixed = _whole_floats_as_ints(value, exc)
        if fixed is None:
            raise
    return model.model_validate(fixed, strict=True)


def _whole_floats_as_ints(value: Any, exc: ValidationError) -> Any | None:
    """A copy of ``value`` with each whole float that failed an integer check made an int, or
    None if there is none (the errors stand as they are)."""
    fixed = copy.deepcopy(value)
    changed = False
    for error in exc.errors(include_url=False):
        if error["type"] != "int_type":
            continue
        parent, key = _located(fixed, error["loc"])
        if parent is None:
            continue
        number = parent[key]
        if type(number) is float and number.is_integer():
            parent[key] = int(number)
            changed = True
    return fixed if changed else None


def _located(value: Any, loc: Sequence[int | str]) -> tuple[Any, Any]:
    """The container and key of the deepest value of ``value`` that ``loc`` reaches (a
    location may end in the name of a union's member, which is no key of the data)."""
    parent: Any = None
    key: Any = None
    node = value
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            break
        parent, key, node = node, part, node[part]
    return parent, key
