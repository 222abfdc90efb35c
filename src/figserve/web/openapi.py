"""OpenAPI document: quart-schema builds it from the routes; this adds real media types.

quart-schema documents responses as JSON models. Image routes answer with image bytes, and every
route can answer problem+json, so the responses of each operation are declared with ``responds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart_schema import OpenAPIProvider

from ..config import Settings
from ..figures import Registry
from ..figures.registry import drawable_pattern
from ..render import MEDIA_TYPES, ImageOptions
from .owner import COOKIE
from .params import MEAN_VAR_MAX, MEAN_VAR_PATTERN

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
        "422": {"description": "Too complex to draw in time.", "content": _PROBLEM_OR_SVG},
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
    "fmt": {"type": "string", "enum": list(MEDIA_TYPES), "description": "The image format."},
    "job_id": {
        "type": "string",
        "description": "The job's id, 32 hex digits: the id (and the Location header) in the "
        "answer of POST /jobs. Another client's job answers 404, as an unknown one.",
    },
    "mean_var": {
        "type": "string",
        "pattern": MEAN_VAR_PATTERN,
        "maxLength": MEAN_VAR_MAX,
        "description": "<mean>_<var>, e.g. 5_3 or -2.5_0.5: decimals, mean from -1000000 to "
        "1000000, var above 0 (at most 300 zeros after the point) up to 1000000",
    },
}
DRAWABLE = "DrawableText"
BLANK = {"type": "string", "maxLength": 0, "description": "Blank: not given."}
_DRAWABLE_REF = {"$ref": f"#/components/schemas/{DRAWABLE}"}


class FigserveOpenAPI(OpenAPIProvider):
    """quart-schema's document, made to tell the truth about what the server accepts: every
    figure's parameters in the bodies that name a figure, the text rule, the upload's file,
    the job limits and the exact path syntax. Built once per app (the catalog is fixed at
    start)."""

    def build_paths(self, rule: Any) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        responses = getattr(self._app.view_functions[rule.endpoint], _ATTR, None)
        for operations in paths.values():
            for operation in operations.values():
                if responses is not None:
                    operation["responses"] = dict(sorted(responses.items()))
                for param in operation["parameters"]:
                    if param.get("in") == "path" and param["name"] in PATH_SCHEMAS:
                        param["schema"] = PATH_SCHEMAS[param["name"]]
                        param["description"] = param["schema"]["description"]
                    elif param.get("in") == "query" and not _takes_blank(param["schema"]):
                        # A blank value is "not given" (an HTML form sends empty fields).
                        param["schema"] = {"anyOf": [param["schema"], BLANK]}
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True
        return paths, components

    def schema(self) -> dict[str, Any]:
        cached = getattr(self, "_figserve_schema", None)
        if cached is None:
            state = self._app.extensions["figserve"]
            cached = self._figserve_schema = truthful(
                super().schema(), state.registry, state.settings
            )
        return cached


def _takes_blank(schema: dict[str, Any]) -> bool:
    """Whether the empty string is already a value of ``schema`` (plain or drawable text)."""
    kinds = schema.get("anyOf", [schema])
    return any(
        k.get("type") == "string"
        and not {"enum", "const", "format", "minLength"} & set(k)
        and ("pattern" not in k or k.get("x-drawable"))
        for k in kinds
    )


def _options_schema(nullable: bool) -> dict[str, Any]:
    """The image options as a body gives them (null: not given) or a form (text)."""
    out: dict[str, Any] = {}
    for name, prop in ImageOptions.model_json_schema()["properties"].items():
        base = next(p for p in prop.get("anyOf", [prop]) if p.get("type") != "null")
        base = {k: v for k, v in base.items() if k not in {"default", "title"}}
        if "description" in prop:
            base["description"] = prop["description"]
        if name != "format" and nullable:
            base = {"anyOf": [base, {"type": "null"}], "description": base.pop("description")}
        out[name] = base
    return out


def render_spec_schema(registry: Registry) -> dict[str, Any]:
    """A body naming a figure: one branch per figure, with that figure's parameters."""
    branches = []
    for spec in registry:
        params = spec.params.model_json_schema()
        params["description"] = "The figure's parameters."
        branches.append(
            {
                "title": spec.name,
                "type": "object",
                "additionalProperties": False,
                "required": ["figure"],
                "properties": {
                    "figure": {"const": spec.name, "description": spec.title},
                    "params": params,
                    **_options_schema(nullable=True),
                },
            }
        )
    return {
        "description": "A figure to render: which one (see GET /api/figures), its parameters, "
        "and the output format and size.",
        "oneOf": branches,
    }


# Who a job belongs to: the owner cookie its submission set, or the operator's token.
SECURITY_SCHEMES: dict[str, Any] = {
    "ownerCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE,
        "description": "The owner cookie that the answer of POST /jobs sets (HttpOnly, "
        "Path=/jobs). A client's jobs are seen and acted on with it only; keep it in a "
        "cookie jar (curl -c jar -b jar).",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's token (FIGSERVE_ADMIN_TOKEN), when one is configured: "
        "every client's jobs. A wrong token answers 401.",
    },
}
# Starting or listing jobs works without the cookie (a start sets one; the list is empty);
# one job needs the cookie that started it, or the operator's token.
_OPTIONAL_OWNER = [{}, {"ownerCookie": []}, {"adminToken": []}]
_OWNER = [{"ownerCookie": []}, {"adminToken": []}]
_EXAMPLE_FIGURES = ("histogram", "waves")  # the README's, when the catalog has them


def examples(registry: Registry) -> dict[str, Any]:
    """A request body for each route that takes one, made of this server's own figures."""
    specs = sorted(registry, key=lambda s: s.name not in _EXAMPLE_FIGURES)  # stable
    seeded = next((s for s in specs if s.random), specs[0])
    fixed = next((s for s in specs if not s.random), specs[0])
    item: dict[str, Any] = {"figure": seeded.name, "params": {"seed": 1} if seeded.random else {}}
    return {
        "render": {**item, "format": "svg", "w": 600, "h": 400},
        "job": {
            "output": "pdf",
            "items": [item, {"figure": fixed.name}],
        },
        "plot": {
            "file": "day,sales,returns\n1,12,2\n2,15,1\n3,11,3\n",
            "kind": "line",
            "x": "day",
            "y": "sales,returns",
            "title": "Sales",
        },
    }


def truthful(doc: dict[str, Any], registry: Registry, settings: Settings) -> dict[str, Any]:
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components["RenderSpec"] = render_spec_schema(registry)
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    sample = examples(registry)
    render = doc["paths"].get("/api/render", {}).get("post")
    if render is not None:
        # The body is a spec of one figure: the same schema as a job's item.
        render["requestBody"]["content"]["application/json"] = {
            "schema": {"$ref": "#/components/schemas/RenderSpec"},
            "example": sample["render"],
        }
    for path, operations in doc["paths"].items():
        if path == "/jobs" or path.startswith("/jobs/"):
            for operation in operations.values():
                operation["security"] = _OPTIONAL_OWNER if path == "/jobs" else _OWNER
    components[DRAWABLE] = {
        "type": "string",
        "pattern": drawable_pattern(),
        "description": "Text a figure can draw: each character has a glyph in the figure "
        "font and is not a control, format, private-use, unassigned or separator character; "
        "it does not open with a combining mark.",
    }
    jobs = doc["paths"].get("/jobs", {}).get("post")
    if jobs is not None:
        body = jobs["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["items"]["maxItems"] = settings.job_max_items
        # A PDF report draws every item as a page: its items leave format out, or give pdf.
        body["if"] = {"properties": {"output": {"const": "pdf"}}}
        body["then"] = {
            "properties": {"items": {"items": {"properties": {"format": {"const": "pdf"}}}}}
        }
        jobs["description"] = (
            f"At most {settings.job_max_items} items. The output pixels of all items together "
            f"(each w x h x density squared, at most {settings.max_pixels:,}) are at most "
            f"{settings.job_max_pixels:,}, and at most {settings.job_max_pdf_pixels:,} for a "
            "PDF; past either, 400."
        )
        jobs["requestBody"]["content"]["application/json"]["example"] = sample["job"]
    plot = doc["paths"].get("/api/plot", {}).get("post")
    if plot is not None:
        form = plot["requestBody"]["content"]["multipart/form-data"]["schema"]
        form["properties"].update(_options_schema(nullable=False))
        form["properties"]["file"] = {
            "type": "string",
            "format": "binary",
            "description": "The data: CSV with a header row of column names, or .npy.",
        }
        form["required"] = ["file"]
        plot["description"] = (
            "Whether an upload can be plotted depends on its file: x and y must name its "
            "columns, and the file must parse; otherwise 400 naming the field."
        )
        plot["requestBody"]["content"]["multipart/form-data"]["example"] = sample["plot"]
    changed = doc["paths"].get("/api/figures/{name}/changed", {}).get("post")
    if changed is not None:
        changed["security"] = [{"adminToken": []}]
        changed["requestBody"]["required"] = False
    _rewrite(doc, components)
    return doc


def _rewrite(node: Any, components: dict[str, Any]) -> None:
    """Replace text markers with the drawable-text schema, and move local ``$defs`` (from
    pydantic) into the components, pointing their references there."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if defs:
            components.update(defs)
            _rewrite(defs, components)
        if node.pop("x-drawable", False):
            node["allOf"] = [dict(_DRAWABLE_REF)]
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in list(node.values()):
            _rewrite(value, components)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, components)
