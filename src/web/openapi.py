"""OpenAPI document: quart-schema builds it from the routes; this adds real media types.

quart-schema documents responses as JSON models. Image routes answer with image bytes, and every
route can answer problem+json, so the responses of each operation are declared with ``responds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart_schema import OpenAPIProvider

from ..render import MEDIA_TYPES

T = TypeVar("T", bound=Callable[..., Any])
_ATTR = "_figserve_responses"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "param": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"param": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_PROBLEM = {"application/problem+json": {"schema": PROBLEM_SCHEMA}}
_PROBLEM_OR_SVG = {**_PROBLEM, "image/svg+xml": _BINARY}


def problem(description: str) -> dict[str, Any]:
    """A response of problem+json."""
    return {"description": description, "content": _PROBLEM}


# Every route that reads a body can answer these.
BODY_ERRORS = {
    "403": problem("A cross-site request."),
    "408": problem("The body did not arrive in time."),
    "413": problem("Body or form too large."),
    "415": problem("Wrong Content-Type."),
}
HTML = {"text/html": {"schema": {"type": "string"}}}


def json_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def image_responses(media_types: list[str]) -> dict[str, Any]:
    return {
        "200": {"description": "The image.", "content": {m: _BINARY for m in media_types}},
        "304": {"description": "Not modified: seeded figure, If-None-Match matched."},
        "400": {"description": "Invalid parameter.", "content": _PROBLEM_OR_SVG},
        "404": {"description": "Unknown figure or format.", "content": _PROBLEM_OR_SVG},
        "503": {"description": "Busy or timed out; see Retry-After.", "content": _PROBLEM_OR_SVG},
    }


def json_responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": {"application/json": ok}}}
    for status in errors:
        out[str(status)] = {"description": "Error", "content": _PROBLEM}
    return out


def responds(responses: dict[str, Any]) -> Callable[[T], T]:
    def decorate(func: T) -> T:
        setattr(func, _ATTR, responses)
        return func

    return decorate


# Path parameters that routes parse themselves, described so clients (and fuzzers) know them.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "fmt": {"type": "string", "enum": list(MEDIA_TYPES)},
    "mean_var": {
        "type": "string",
        "pattern": r"^[+-]?(\d+(\.\d*)?|\.\d+)_[+-]?(\d+(\.\d*)?|\.\d+)$",
        "description": "<mean>_<var>, e.g. 5_3 or -2.5_0.5",
    },
}


class FigserveOpenAPI(OpenAPIProvider):
    def build_paths(self, rule: Any) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        responses = getattr(self._app.view_functions[rule.endpoint], _ATTR, None)
        for operations in paths.values():
            for operation in operations.values():
                if responses is not None:
                    operation["responses"] = responses
                for param in operation["parameters"]:
                    if param.get("in") == "path" and param["name"] in PATH_SCHEMAS:
                        param["schema"] = PATH_SCHEMAS[param["name"]]
        return paths, components
