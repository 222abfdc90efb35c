"""Validators, revalidation, compression and clean 304s (in process and on the wire)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import http.client
import re

import brotli
import pytest
from quart import url_for

from tests.support.html import parse
from tests.web.test_errors import BROWSER_IMG_ACCEPT

ONLY_ON_304 = {"etag", "cache-control", "vary", "expires", "date", "content-location", "server"}


async def _sent_headers(app, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Status and headers exactly as the app hands them to the server (the test client
    rebuilds a response object, which adds a default Content-Type)."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("localhost", 80),
        "extensions": {},
    }
    started: dict = {}
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            started["status"] = message["status"]
            started["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}

    await app(scope, receive, send)
    return started["status"], started["headers"]


@pytest.mark.parametrize(
    "path",
    ["/", "/normal/5_3", "/gallery/waves?components=2", "/docs", "/api/figures", "/openapi.json"],
)
async def test_pages_and_documents_revalidate(app, client, path: str) -> None:
    first = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-cache"
    tag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
    again = await client.get(path, headers={"If-None-Match": tag})
    assert again.status_code == 304 and await again.get_data() == b""
    assert again.headers["ETag"] == tag
    status, sent = await _sent_headers(app, path, {"If-None-Match": tag})
    assert status == 304 and set(sent) <= ONLY_ON_304, sent
    changed = await client.get(path, headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200


async def test_errors_and_private_pages_are_never_stored(client) -> None:
    bad = await client.get("/gallery/waves?components=99")
    assert bad.status_code == 400 and bad.headers["Cache-Control"] == "no-store"
    assert "ETag" not in bad.headers
    jobs = await client.get("/jobs", headers={"Accept": "text/html"})
    assert jobs.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "accept", "encoding"),
    [
        ("/", "gzip", "gzip"),
        ("/", "gzip, br", "br"),
        ("/", "br;q=0.5, gzip", "gzip"),
        ("/api/figures", "gzip", "gzip"),
        ("/openapi.json", "br", "br"),
        ("/figures/waves.svg", "gzip", "gzip"),
        ("/figures/waves.png", "gzip, br", None),  # PNG is compressed already
        ("/figures/waves.pdf", "gzip", None),
        ("/", "identity", None),
        ("/", "gzip;q=0", None),
    ],
)
async def test_text_is_compressed_when_the_client_accepts_it(
    client, path: str, accept: str, encoding: str | None
) -> None:
    plain = await client.get(path, headers={"Accept-Encoding": "identity"})
    resp = await client.get(path, headers={"Accept-Encoding": accept})
    assert resp.status_code == 200
    assert resp.headers.get("Content-Encoding") == encoding
    body = await resp.get_data()
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "br":
        body = brotli.decompress(body)
    assert body == await plain.get_data()
    text = resp.mimetype.startswith("text/") or resp.mimetype.endswith(("json", "xml"))
    assert ("Accept-Encoding" in resp.headers.get("Vary", "")) == text
    if encoding and "ETag" in resp.headers:
        # Other bytes, another tag; either one revalidates.
        assert resp.headers["ETag"] == plain.headers["ETag"][:-1] + f'-{encoding}"'
        again = await client.get(
            path, headers={"Accept-Encoding": accept, "If-None-Match": resp.headers["ETag"]}
        )
        assert again.status_code == 304 and again.headers["ETag"] == resp.headers["ETag"]


async def test_small_bodies_are_not_compressed(client) -> None:
    resp = await client.get("/favicon.ico", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers


async def test_static_files_have_fingerprinted_urls(app, client) -> None:
    async with app.test_request_context("/"):
        href = url_for("static", filename="style.css")
    assert re.fullmatch(r"/static/style\.css\?v=[0-9a-f]{12}", href)
    resp = await client.get(href, headers={"Accept-Encoding": "gzip"})
    assert resp.status_code == 200 and resp.mimetype == "text/css"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["Content-Encoding"] == "gzip"
    assert b"--accent" in gzip.decompress(await resp.get_data())
    # Without its fingerprint (an old page, a hand-typed URL): short-lived, revalidated.
    bare = await client.get("/static/style.css")
    assert bare.headers["Cache-Control"] == "public, max-age=300"
    again = await client.get("/static/style.css", headers={"If-None-Match": bare.headers["ETag"]})
    assert again.status_code == 304
    for path in ("/static/../app.py", "/static/nope.css", "/static/%2e%2e/app.py"):
        assert (await client.get(path)).status_code == 404


async def test_an_image_304_says_only_what_its_200_would(app, client) -> None:
    url = "/figures/histogram.png?seed=3"
    first = await client.get(url, headers={"Accept": BROWSER_IMG_ACCEPT})
    again = await client.get(
        url, headers={"Accept": BROWSER_IMG_ACCEPT, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    assert again.headers["ETag"] == first.headers["ETag"]
    status, sent = await _sent_headers(
        app, url, {"Accept": BROWSER_IMG_ACCEPT, "If-None-Match": first.headers["ETag"]}
    )
    assert status == 304 and set(sent) <= ONLY_ON_304, sent
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]


def _raw_get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


@pytest.mark.live
@pytest.mark.parametrize(
    "path", ["/figures/waves.png?w=200&h=150", "/figures/waves.svg?w=200&h=150", "/", "/docs"]
)
def test_a_304_on_the_wire_has_no_body_headers(web_server, path: str) -> None:
    headers = {"Accept": BROWSER_IMG_ACCEPT, "Accept-Encoding": "gzip"}
    first = _raw_get(web_server.port, path, headers)
    assert first.status == 200
    again = _raw_get(web_server.port, path, {**headers, "If-None-Match": first.headers["ETag"]})
    assert again.status == 304
    names = {k.lower() for k in again.headers}
    assert names <= ONLY_ON_304, names
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers.get("Vary") == first.headers.get("Vary")


@pytest.mark.live
def test_the_gallery_on_the_wire_is_compressed_and_its_images_are_not(web_server) -> None:
    page = _raw_get(web_server.port, "/", {"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip"
    conn = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=30)
    conn.request("GET", "/", headers={"Accept-Encoding": "gzip"})
    html = gzip.decompress(conn.getresponse().read()).decode()
    conn.close()
    src = parse(html).images[0]["src"].replace("&amp;", "&")
    image = _raw_get(web_server.port, src, {"Accept-Encoding": "gzip, br"})
    assert image.status == 200 and "Content-Encoding" not in image.headers


@pytest.mark.parametrize("path", ["/", "/normal/5_3", "/gallery/waves", "/docs", "/jobs", "/nope"])
async def test_pages_carry_their_stylesheet_allowed_by_its_hash(client, path) -> None:
    # No stylesheet to fetch before the first paint: it is in the page, and the page's
    # Content-Security-Policy allows exactly that style (by its SHA-256) and no other inline one.
    resp = await client.get(path, headers={"Accept": "text/html"})
    html = await resp.get_data(as_text=True)
    (css,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert "--accent" in css and "/*" not in css
    assert 'rel="stylesheet"' not in html
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    policy = resp.headers["Content-Security-Policy"]
    assert f"style-src 'self' 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy
