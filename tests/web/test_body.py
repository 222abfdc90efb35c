"""Request bodies within limits: JSON nesting and media type, bytes however they are sent, form
fields. Every JSON route is found from the OpenAPI document, so a new one is covered too."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from figserve.web.body import MAX_JSON_DEPTH, json_depth

LIMIT = 64 * 1024  # max_body_bytes of these apps
FIELDS = 40  # max_form_fields of these apps
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
# The operator's routes check their token before they read a body: every request here is the
# operator's, so the body checks are reached on them too.
ADMIN_TOKEN = "an-operator-token-for-body-tests"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def app_config(tmp_path: Path) -> dict:
    return {
        "warm_up": False,
        "jobs_dir": str(tmp_path / "jobs"),
        "max_body_bytes": LIMIT,
        "max_form_fields": FIELDS,
        "admin_token": ADMIN_TOKEN,
    }


async def json_routes(client) -> list[str]:
    doc = await (await client.get("/openapi.json")).get_json()
    routes = [
        path.replace("{name}", "waves")  # a route that names a figure names a real one
        for path, operations in doc["paths"].items()
        for method, op in operations.items()
        if method == "post" and "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert {"/api/render", "/jobs"} <= set(routes)
    return routes


def nested(depth: int, inner: str = "1") -> str:
    # Arrays and objects alternate, as an attacker might mix them.
    text = inner
    for level in range(depth):
        text = f'{{"a": {text}}}' if level % 2 else f"[{text}]"
    return text


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- JSON: nesting, size, media type -------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 10_000])
async def test_deeply_nested_json_is_a_400_naming_the_body_on_every_json_route(
    client, caplog, depth
):
    for route in await json_routes(client):
        for text in (nested(depth), "[" * depth, '{"items": ' + nested(depth) + "}"):
            headers = {"Content-Type": "application/json", **AUTH}
            resp = await client.post(route, data=text, headers=headers)
            assert resp.status_code == 400, (route, depth)
            problem = await resp.get_json()
            assert problem["param"] == "body"
            assert f"at most {MAX_JSON_DEPTH}" in problem["detail"]
    no_errors_logged(caplog)


async def test_nesting_inside_the_parameters_is_checked_before_parsing(client, caplog):
    spec = {"figure": "waves", "params": {"title": json.loads(nested(MAX_JSON_DEPTH))}}
    resp = await client.post("/api/render", json=spec)
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "body"
    # At the limit it parses, and the parameter itself is what is wrong.
    spec["params"]["title"] = json.loads(nested(MAX_JSON_DEPTH - 2))
    resp = await client.post("/api/render", json=spec)
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "params.title"
    no_errors_logged(caplog)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain;charset=UTF-8", "application/jsonx", "image/png"],
)
async def test_json_routes_require_a_json_media_type(client, content_type):
    body = json.dumps({"figure": "waves", "items": [{"figure": "waves"}]})
    headers = AUTH if content_type is None else {"Content-Type": content_type, **AUTH}
    for route in await json_routes(client):
        resp = await client.post(route, data=body, headers=headers)
        assert resp.status_code == 415, route
        assert (await resp.get_json())["param"] == "Content-Type"
    assert (await (await client.get("/jobs")).get_json())["jobs"] == []


async def test_json_with_a_charset_or_a_json_suffix_type_is_accepted(client):
    spec = json.dumps({"figure": "waves", "format": "svg"})
    for content_type in ("application/json; charset=utf-8", "application/problem+json"):
        resp = await client.post("/api/render", data=spec, headers={"Content-Type": content_type})
        assert resp.status_code == 200, content_type


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    # Strings full of what a depth counter could mistake for structure.
    | st.text(alphabet=st.sampled_from('[]{}"\\/,:ab\u00e9\u4e2d\U0001f600'), max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.sampled_from('[]{}"\\ab'), max_size=6), children)
    ),
    max_leaves=40,
)


def true_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(true_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(true_depth, value.values()), default=0)
    return 0


@FAST
@given(json_values, st.booleans(), st.sampled_from([None, 0, 2]))
def test_json_depth_counts_exactly_what_the_parser_nests(value, ascii_only, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert json_depth(text.encode()) == true_depth(value)


@FAST
@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\ 1,:', max_size=300).map(str.encode))
def test_json_depth_takes_any_bytes(raw: bytes):
    assert json_depth(raw) >= 0


@FAST
@given(
    depth=st.integers(0, 3 * MAX_JSON_DEPTH),
    route=st.sampled_from(["/api/render", "/jobs"]),
    inner=st.sampled_from(["1", '"x"', "[]", "{}", '"[[[["']),
)
async def test_any_nesting_on_any_json_route_is_answered_without_a_server_error(
    app, depth, route, inner
):
    client = app.test_client()
    body = '{"figure": "waves", "items": [' + nested(depth, inner) + "]}"
    resp = await client.post(route, data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code < 500
    if depth + 2 > MAX_JSON_DEPTH:
        assert resp.status_code == 400
        assert (await resp.get_json())["param"] == "body"


# --- body bytes: with or without a Content-Length ------------------------------------------------


def multipart(size: int, boundary: str = "xyzzy") -> tuple[bytes, bytes, bytes]:
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="data.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
        "a,b\r\n"
    ).encode()
    return head, b"1,2\n" * (size // 4), f"\r\n--{boundary}--\r\n".encode()


async def stream(
    client, path: str, content_type: str, chunks: list[bytes], complete: bool
) -> tuple[int, bytes]:
    """Send ``chunks`` without a Content-Length (chunked, as a client streaming an upload);
    return the status and body of the answer."""
    async with asyncio.timeout(10):
        connection = client.request(path, method="POST", headers={"Content-Type": content_type})
        async with connection:
            for chunk in chunks:
                await connection.send(chunk)
            if complete:
                await connection.send_complete()
            # Without the whole body sent, only a server that stopped at the limit answers.
            first = await connection.receive()
    assert connection.status_code is not None
    return connection.status_code, first + bytes(connection.response_data)


ROUTES = [
    ("/api/plot", "multipart/form-data; boundary=xyzzy"),
    ("/api/render", "application/json"),
    ("/jobs", "application/json"),
    ("/jobs", "application/x-www-form-urlencoded"),
    ("/jobs", "multipart/form-data; boundary=xyzzy"),
]


@pytest.mark.parametrize(("path", "content_type"), ROUTES)
async def test_a_chunked_body_past_the_limit_is_413_before_it_ends(client, path, content_type):
    head, middle, _ = multipart(LIMIT)
    chunks = [head] + [middle[i : i + 4096] for i in range(0, len(middle), 4096)] + [b"x" * 8192]
    assert sum(map(len, chunks)) > LIMIT
    status, body = await stream(client, path, content_type, chunks, complete=False)
    assert status == 413, body


async def test_an_upload_is_never_silently_cut(client, app):
    # Under the limit it is read whole: the rows counted are all the rows sent.
    head, middle, tail = multipart(LIMIT - 2048)
    status, body = await stream(
        client, "/api/plot", "multipart/form-data; boundary=xyzzy", [head, middle, tail], True
    )
    assert status == 200, body
    # One byte over (streamed, so no Content-Length to check beforehand): 413, not a cut file.
    over = LIMIT - len(head) - len(tail) + 1
    status, _ = await stream(
        client,
        "/api/plot",
        "multipart/form-data; boundary=xyzzy",
        [head, b"1" * over, tail],
        True,
    )
    assert status == 413


@FAST
@given(size=st.integers(LIMIT - 600, LIMIT + 600), pieces=st.integers(1, 9))
async def test_a_streamed_body_is_413_exactly_when_it_passes_the_limit(app, size, pieces):
    client = app.test_client()
    body = json.dumps({"figure": "waves", "format": "svg", "pad": ""}).encode()
    body = body[:-2] + b" " * (size - len(body)) + body[-2:]
    step = -(-len(body) // pieces)
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    status, _ = await stream(client, "/api/render", "application/json", chunks, True)
    assert status == (413 if size > LIMIT else 400)  # "pad" is an unknown parameter


# --- forms ---------------------------------------------------------------------------------------


def urlencoded(count: int) -> bytes:
    return "&".join(f"f{i}=" for i in range(count)).encode()


def multipart_fields(count: int, boundary: str = "xyzzy") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'
        for i in range(count)
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


@pytest.mark.parametrize(
    ("path", "content_type", "make"),
    [
        ("/jobs", "application/x-www-form-urlencoded", urlencoded),
        ("/jobs", "multipart/form-data; boundary=xyzzy", multipart_fields),
        ("/api/plot", "multipart/form-data; boundary=xyzzy", multipart_fields),
    ],
)
async def test_too_many_form_fields_are_refused_before_they_are_built(
    client, path, content_type, make
):
    resp = await client.post(path, data=make(FIELDS + 1), headers={"Content-Type": content_type})
    assert resp.status_code == 413
    problem = await resp.get_json()
    assert problem["param"] == "form"
    assert f"at most {FIELDS} fields" in problem["detail"]
    # At the limit the form is read, and its fields are what is wrong.
    resp = await client.post(path, data=make(FIELDS), headers={"Content-Type": content_type})
    assert resp.status_code == 400


@FAST
@given(count=st.integers(0, 3 * FIELDS), multi=st.booleans())
async def test_any_number_of_form_fields_is_a_clear_4xx(app, count, multi):
    client = app.test_client()
    content_type = (
        "multipart/form-data; boundary=xyzzy" if multi else ("application/x-www-form-urlencoded")
    )
    data = multipart_fields(count) if multi else urlencoded(count)
    resp = await client.post("/jobs", data=data, headers={"Content-Type": content_type})
    assert resp.status_code == (413 if count > FIELDS else 400)
