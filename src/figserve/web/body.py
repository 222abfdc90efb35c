"""Reading request bodies within limits: form fields, JSON nesting.

The bytes of a body are bounded before Quart sees them: the ASGI guard (``asgi.py``) counts
every byte that arrives and answers 413 past ``max_body_bytes``. Forms and JSON are then checked
for size and shape before they are parsed, so no body can make parsing explode. Forms are parsed
here, with the standard library (URL-encoded) and Werkzeug's public form parser (multipart),
under figserve's limits of fields and field size.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from quart import Quart, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser

from ..config import Settings
from ..validation import FieldError
from .errors import Problem, field_error

# JSON bodies of figserve are at most three levels deep (a job's items' params); 32 leaves room
# and keeps every parser and validator far from Python's recursion limit.
MAX_JSON_DEPTH = 32
# The longest value of one form field: every field is a short parameter.
MAX_FORM_VALUE_BYTES = 64 * 1024
URLENCODED = frozenset({"application/x-www-form-urlencoded", "application/x-url-encoded"})

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_DEPTH_STEP = np.zeros(256, dtype=np.int32)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def _too_many_fields(limit: int | None) -> Problem:
    return Problem(
        413,
        "Form too large",
        f"A form may have at most {limit} fields of at most {MAX_FORM_VALUE_BYTES:,} bytes each.",
        [FieldError("form", f"at most {limit} fields")],
    )


def install(app: Quart, settings: Settings) -> None:
    """The limits of every request of ``app`` (the ASGI guard counts the bytes first)."""
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["MAX_FORM_PARTS"] = settings.max_form_fields
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_VALUE_BYTES
    # Quart's own deadline for reading a whole body; the ASGI guard (asgi.py) covers the rest.
    app.config["BODY_TIMEOUT"] = settings.body_timeout


def is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw``, counted without parsing.

    Escapes are removed first (so no quote is escaped), then strings; the brackets left are
    structure. Linear time; UTF-8 never uses ASCII bytes inside a multi-byte character, so working
    on bytes is exact. For text that is not valid JSON the number may be off: parsing it fails.
    """
    bare = _STRING.sub(b"", _ESCAPE.sub(b"", raw))
    if not bare:
        return 0
    steps = _DEPTH_STEP[np.frombuffer(bare, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def unsupported_media_type(expected: str) -> Problem:
    return Problem(
        415,
        "Unsupported Media Type",
        f"Send the body as {expected} (Content-Type: {expected}).",
        [FieldError("Content-Type", f"expected {expected}")],
    )


async def json_body(max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body, after checking its media type, size and nesting depth.

    Every JSON route reads its body through this. A body that is not JSON answers 415, too
    large 413 (while it arrives), too deep or malformed 400 naming ``body``.
    """
    if not is_json(request.mimetype):
        raise unsupported_media_type("application/json")
    raw = await request.get_data()
    depth = json_depth(raw)
    if depth > max_depth:
        message = f"JSON nested {depth} levels deep; at most {max_depth} are allowed"
        raise field_error("body", message, "Invalid body")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # also a body that is not UTF-8
        raise field_error("body", "not valid JSON", "Invalid body") from None


async def json_object() -> dict[str, Any]:
    body = await json_body()
    if not isinstance(body, dict):
        raise field_error("body", "expected a JSON object", "Invalid body")
    return body


def _in_memory(
    total_content_length: int | None,
    content_type: str | None,
    filename: str | None,
    content_length: int | None = None,
) -> io.BytesIO:
    # The whole body is in memory already (within max_body_bytes): so are its files.
    return io.BytesIO()


async def read_form() -> tuple[MultiDict, MultiDict]:
    """The form fields and files of the request, within the form limits (413 past them)."""
    raw = await request.get_data()  # bounded by the ASGI guard
    limit = request.max_form_parts
    if request.mimetype in URLENCODED:
        if limit is not None and raw and raw.count(b"&") + 1 > limit:
            raise _too_many_fields(limit)
        # Undecodable bytes raise UnicodeDecodeError: a 400 naming the body (see errors.py).
        fields = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=limit)
        return MultiDict(fields), MultiDict()
    if request.mimetype == "multipart/form-data":
        boundary = request.mimetype_params.get("boundary", "").encode("ascii", "replace")
        if not boundary:
            return MultiDict(), MultiDict()  # not a form anyone can read: no fields
        parser = MultiPartParser(
            stream_factory=_in_memory,
            max_form_memory_size=MAX_FORM_VALUE_BYTES,
            # Read in pieces well below the field limit, which also bounds what the
            # parser holds between two pieces.
            buffer_size=MAX_FORM_VALUE_BYTES // 4,
            max_form_parts=limit,
        )
        try:
            form, files = parser.parse(io.BytesIO(raw), boundary, len(raw))
        except ValueError:
            return MultiDict(), MultiDict()  # malformed: as if it had no fields
        except RequestEntityTooLarge:
            # Too many parts, or one field too long (the body's size was checked before).
            raise _too_many_fields(limit) from None
        return form, files
    return MultiDict(), MultiDict()
