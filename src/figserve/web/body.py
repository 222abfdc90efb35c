"""Reading request bodies within limits: bytes, form fields, JSON nesting.

Quart checks ``MAX_CONTENT_LENGTH`` against the Content-Length header and against what is buffered
at once, but a chunked body read piece by piece (a multipart upload) is never counted as a whole.
``CountedBody`` counts every byte received, so any body past the limit answers 413 however it is
sent, and stops being buffered there. Forms and JSON are checked for size and shape before they
are parsed, so no body can make parsing explode.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import numpy as np
from quart import Quart, request
from quart.formparser import FormDataParser, ParserFunc
from quart.wrappers.request import Body, Request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from ..config import Settings
from ..validation import FieldError
from .errors import Problem, field_error

# JSON bodies of figserve are at most three levels deep (a job's items' params); 32 leaves room
# and keeps every parser and validator far from Python's recursion limit.
MAX_JSON_DEPTH = 32
# The longest value of one form field: every field is a short parameter.
MAX_FORM_VALUE_BYTES = 64 * 1024

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_DEPTH_STEP = np.zeros(256, dtype=np.int32)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


class CountedBody(Body):
    """A request body that answers 413 once more than the limit has arrived in all."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None):
        super().__init__(expected_content_length, max_content_length)
        self.received = 0
        self.limit = max_content_length

    def append(self, data: bytes) -> None:
        if not data or self._must_raise is not None:
            return
        self.received += len(data)
        if self.limit is not None and self.received > self.limit:
            self._data.clear()  # nothing past the limit is kept, nor anything before it
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()
            return
        super().append(data)

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            # The limit may be passed while a reader waits for the next piece: it then wakes
            # to an empty, complete body, which must not read as the end of a short one.
            if self._must_raise is not None:
                raise self._must_raise from None
            raise

    @property
    def too_large(self) -> bool:
        return self.limit is not None and self.received > self.limit


class BoundedFormParser(FormDataParser):
    """Form parsing that refuses too many fields before building them."""

    async def _parse_urlencoded(
        self,
        body: Body,
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[MultiDict, MultiDict]:
        raw = await body
        limit = self.max_form_parts
        if limit is not None and raw and raw.count(b"&") + 1 > limit:
            raise _too_many_fields(limit)
        # Undecodable bytes raise UnicodeDecodeError: a 400 naming the body (see errors.py).
        fields = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=limit)
        return self.cls(fields), self.cls()

    async def _parse_multipart(
        self,
        body: Body,
        mimetype: str,
        content_length: int | None,
        options: dict[str, str],
    ) -> tuple[MultiDict, MultiDict]:
        try:
            return await super()._parse_multipart(body, mimetype, content_length, options)
        except RequestEntityTooLarge:
            if isinstance(body, CountedBody) and body.too_large:
                raise
            # Too many parts, or one field too long: say which limit, not just "too large".
            raise _too_many_fields(self.max_form_parts) from None

    parse_functions: ClassVar[dict[str, ParserFunc]] = {
        **FormDataParser.parse_functions,
        "multipart/form-data": _parse_multipart,
        "application/x-www-form-urlencoded": _parse_urlencoded,
        "application/x-url-encoded": _parse_urlencoded,
    }


def _too_many_fields(limit: int | None) -> Problem:
    return Problem(
        413,
        "Form too large",
        f"A form may have at most {limit} fields of at most {MAX_FORM_VALUE_BYTES:,} bytes each.",
        [FieldError("form", f"at most {limit} fields")],
    )


class FigserveRequest(Request):
    body_class = CountedBody
    form_data_parser_class = BoundedFormParser


def install(app: Quart, settings: Settings) -> None:
    """Make every request of ``app`` count its body and bound its forms."""
    app.request_class = FigserveRequest
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


async def read_form() -> tuple[MultiDict, MultiDict]:
    """The form fields and files of the request, within the form limits (413 past them)."""
    form = await request.form
    files = await request.files
    return form, files
