"""The ``/docs`` page: the OpenAPI document as a person reads it.

Each operation becomes its parameters, its request body (fields, types and an example), who may
call it, and its answers in order of status. Everything comes from the document itself, so the
page and ``/openapi.json`` never disagree.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

_REF = "#/components/schemas/"
_SECURITY_WORDS = {
    "ownerCookie": "the owner cookie that POST /jobs sets",
    "adminToken": "the operator's bearer token",
}


@dataclass(frozen=True)
class Row:
    name: str
    where: str  # path, query, cookie, header, body or form
    type: str
    description: str
    required: bool = False


@dataclass(frozen=True)
class Body:
    media_type: str
    fields: list[Row]
    example: str  # JSON, or a curl command for a form


@dataclass(frozen=True)
class Endpoint:
    anchor: str
    method: str
    path: str
    summary: str
    description: str
    parameters: list[Row]
    body: Body | None
    security: str
    responses: list[tuple[str, str]] = field(default_factory=list)


def endpoints(doc: dict[str, Any], base: str) -> list[Endpoint]:
    """Every operation of ``doc`` in the document's order; ``base`` is the origin examples
    name (the public URL, or the quick start's address)."""
    components = doc.get("components", {}).get("schemas", {})
    out = []
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            out.append(
                Endpoint(
                    anchor=_anchor(method, path),
                    method=method.upper(),
                    path=path,
                    summary=op.get("summary", ""),
                    description=op.get("description", ""),
                    parameters=[_parameter(p) for p in op.get("parameters", [])],
                    body=_body(op.get("requestBody"), components, method, path, base),
                    security=_security(op.get("security")),
                    responses=[
                        (status, response.get("description", ""))
                        for status, response in sorted(op.get("responses", {}).items())
                    ],
                )
            )
    return out


def _anchor(method: str, path: str) -> str:
    return f"{method}-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _parameter(param: dict[str, Any]) -> Row:
    schema = param.get("schema", {})
    return Row(
        name=param["name"],
        where=param.get("in", ""),
        type=schema_type(schema),
        description=param.get("description") or schema.get("description") or "",
        required=bool(param.get("required")),
    )


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        return components.get(ref.removeprefix(_REF), {})
    return schema


def _body(
    body: dict[str, Any] | None,
    components: dict[str, Any],
    method: str,
    path: str,
    base: str,
) -> Body | None:
    if not body:
        return None
    media_type, content = next(iter(body.get("content", {}).items()))
    schema = _resolve(content.get("schema", {}), components)
    where = "form" if media_type.startswith("multipart/") else "body"
    fields = [
        Row(
            name=name,
            where=where,
            type=_field_type(prop, components),
            description=prop.get("description", ""),
            required=name in required,
        )
        for name, prop, required in _properties(schema)
    ]
    example = content.get("example")
    if example is None:
        shown = ""
    elif where == "form":
        shown = _curl_form(example, method, base + path)
    else:
        shown = _json_example(example)
    return Body(media_type, fields, shown)


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], set[str]]]:
    """The fields of an object schema; of a choice of objects (one per figure), each field once,
    a constant that differs between them (the figure's name) as its choices."""
    branches = schema.get("oneOf") or [schema]
    merged: dict[str, dict[str, Any]] = {}
    required: set[str] = set(branches[0].get("required", []))
    choices: dict[str, list[Any]] = {}
    for branch in branches:
        required &= set(branch.get("required", []))
        for name, prop in branch.get("properties", {}).items():
            merged.setdefault(name, prop)
            if "const" in prop:
                choices.setdefault(name, []).append(prop["const"])
    if len(branches) > 1:
        for name, values in choices.items():
            merged[name] = {"enum": values, "description": "Which one (see GET /api/figures)."}
        for name, prop in merged.items():
            if prop.get("type") == "object" and "properties" in prop:
                merged[name] = {
                    "type": "object",
                    "description": "The figure's parameters by name: each figure's own, as "
                    "GET /api/figures and the query of its image route below list them.",
                }
    return [(name, prop, required) for name, prop in merged.items()]


def _field_type(prop: dict[str, Any], components: dict[str, Any]) -> str:
    if "const" in prop:
        return f"exactly {prop['const']}"
    if prop.get("type") == "array":
        item = prop.get("items", {})
        if item.get("$ref") == f"{_REF}RenderSpec":
            what = "figure specs, each as the body of POST /api/render"
        else:
            what = schema_type(_resolve(item, components))
        low, high = prop.get("minItems"), prop.get("maxItems")
        count = f"{low:,} to {high:,} " if low is not None and high is not None else ""
        return f"list of {count}{what}"
    if prop.get("type") == "object":
        return "object"
    return schema_type(prop)


def _json_example(example: Any) -> str:
    """JSON a person reads: a key per line, a list's items a line each, the rest compact."""
    if not isinstance(example, dict):
        return json.dumps(example, ensure_ascii=False)
    lines = []
    for key, value in example.items():
        if isinstance(value, list) and value:
            items = ",\n".join(f"    {json.dumps(v, ensure_ascii=False)}" for v in value)
            shown = f"[\n{items}\n  ]"
        else:
            shown = json.dumps(value, ensure_ascii=False)
        lines.append(f"  {json.dumps(key)}: {shown}")
    return "{\n" + ",\n".join(lines) + "\n}"


def _curl_form(example: dict[str, Any], method: str, url: str) -> str:
    """A form example as the curl command that sends it; the file from a file of that name."""
    parts = [f"curl -X {method.upper()}"] if method.lower() != "post" else ["curl"]
    for name, value in example.items():
        if name == "file":
            parts.append("-F file=@data.csv")
        else:
            parts.append(f"-F {shlex.quote(f'{name}={value}')}")
    parts += ["-o plot.png", url]
    return " \\\n     ".join(parts)


def _security(requirements: list[dict[str, Any]] | None) -> str:
    if not requirements:
        return ""
    ways = [" and ".join(_SECURITY_WORDS.get(k, k) for k in r) for r in requirements if r]
    if not ways:
        return ""
    if any(not r for r in requirements):
        return f"Anyone; {', or '.join(ways)} says whose jobs."
    return f"Needs {', or '.join(ways)}."


def schema_type(schema: dict[str, Any]) -> str:
    """A parameter's schema in a few words: ``integer 1 to 200``, ``one of png, svg``."""
    kinds = [k for k in schema.get("anyOf", [schema]) if k.get("type") != "null"]
    words = []
    for kind in kinds:
        if kind.get("maxLength") == 0 and kind.get("type") == "string":
            continue  # blank: not given
        if "anyOf" in kind:
            words.append(schema_type(kind))
        elif "enum" in kind:
            words.append("one of " + ", ".join(str(v) for v in kind["enum"]))
        elif kind.get("format") == "date":
            words.append("date")
        elif kind.get("format") == "binary":
            words.append("file")
        else:
            word = str(kind.get("type", "text"))
            low = kind.get("minimum", kind.get("exclusiveMinimum"))
            high = kind.get("maximum", kind.get("exclusiveMaximum"))
            if low is not None and high is not None:
                word += f" {_number(low)} to {_number(high)}"
            elif kind.get("maxLength") is not None:
                word = f"text, at most {kind['maxLength']}"
            words.append(word)
    return " or ".join(words) or "text"


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
