"""How responses travel: validators and revalidation, compression, and clean 304s.

- Pages, the catalog and the OpenAPI document carry a strong ``ETag`` (a hash of the body) and
  ``Cache-Control: no-cache``: a browser keeps them and asks each time, and gets an empty 304
  while nothing changed.
- Text (HTML, JSON, SVG, CSS, JavaScript) is compressed when the client accepts it: brotli when
  the ``brotli`` package is installed and the client prefers it, else gzip. Images that are
  compressed already (PNG, WebP, JPEG, PDF) and bodies that are streamed or already encoded are
  sent as they are. Every compressible response says ``Vary: Accept-Encoding``, and a
  compressed one has an ETag of its own (``"<tag>-gzip"``), since its bytes differ.
- A 304 carries only what its 200 would have said about caching (``ETag``, ``Cache-Control``,
  ``Vary``, ``Expires``, ``Date``, ``Content-Location``): no ``Content-Type``, no
  ``Content-Length``, no page CSP.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable

from quart import Quart, Response, request
from quart.wrappers.response import DataBody

try:  # optional: gzip alone is enough, brotli is smaller when installed
    import brotli
except ImportError:  # pragma: no cover - depends on the installation
    brotli = None

COMPRESSIBLE = frozenset(
    {
        "text/html",
        "text/css",
        "text/plain",
        "text/csv",
        "text/javascript",
        "application/javascript",
        "application/json",
        "application/problem+json",
        "application/xml",
        "image/svg+xml",
    }
)
MIN_COMPRESS_BYTES = 512  # below this the headers cost more than the bytes saved
GZIP_LEVEL = 6
BROTLI_QUALITY = 5  # fast enough per response, smaller than gzip at 6
REVALIDATE = "no-cache"  # keep it, but ask every time (a 304 while unchanged)
# What a 304 may repeat of its 200 (RFC 9110, 15.4.5).
KEEP_ON_304 = ("ETag", "Cache-Control", "Vary", "Expires", "Date", "Content-Location")
_SUFFIXES = {"br": "-br", "gzip": "-gzip"}

# Endpoints whose 200 answers are revalidated; others stay ``no-store`` unless they say so.
REVALIDATED: set[str] = {
    "pages.index",
    "pages.normal_page",
    "pages.figure_page",
    "pages.docs",
    "api.catalog",
    "openapi",
    "userpages.page",
}


def body_tag(data: bytes) -> str:
    return f'"{hashlib.blake2b(data, digest_size=16).hexdigest()}"'


def encoding_for(mimetype: str | None) -> str | None:
    """The content coding this request's response of ``mimetype`` gets, if any."""
    if mimetype not in COMPRESSIBLE:
        return None
    accepted = request.accept_encodings
    gzip_q = accepted["gzip"]
    brotli_q = accepted["br"] if brotli is not None else 0
    if brotli_q > 0 and brotli_q >= gzip_q:
        return "br"
    return "gzip" if gzip_q > 0 else None


def variant_tag(tag: str, encoding: str | None) -> str:
    """The ETag of a representation coded with ``encoding`` (``"abc"`` -> ``"abc-gzip"``)."""
    if encoding is None or not tag.endswith('"'):
        return tag
    return f'{tag[:-1]}{_SUFFIXES[encoding]}"'


def _base(tag: str) -> str:
    for suffix in _SUFFIXES.values():
        if tag.endswith(suffix):
            return tag[: -len(suffix)]
    return tag


def matches(tag: str | None) -> bool:
    """Whether the request's ``If-None-Match`` names ``tag`` in any of its codings, or is
    ``*`` (any current representation; a resource without a tag has one too)."""
    given = request.if_none_match
    if not given:
        return False
    if given.star_tag:
        return True
    if tag is None:
        return False
    wanted = _base(tag.removeprefix("W/").strip('"'))
    return any(_base(t) == wanted for t in given.as_set(include_weak=True))


def not_modified(tag: str | None, cache_control: str, vary: Iterable[str] = ()) -> Response:
    resp = Response(b"", status=304)
    if tag is not None:
        resp.headers["ETag"] = tag
    resp.headers["Cache-Control"] = cache_control
    for value in vary:
        resp.vary.add(value)
    return resp


def _clean_304(resp: Response) -> None:
    for name in list(resp.headers.keys()):
        if name not in KEEP_ON_304:
            del resp.headers[name]


def _compress(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        assert brotli is not None
        return brotli.compress(data, quality=BROTLI_QUALITY)
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


async def finish(resp: Response) -> Response:
    """Validators, compression and 304 cleanup of one response (the last step)."""
    if resp.status_code == 304:
        _clean_304(resp)
        return resp
    if resp.mimetype not in COMPRESSIBLE:
        return resp
    resp.vary.add("Accept-Encoding")
    if not isinstance(resp.response, DataBody) or "Content-Encoding" in resp.headers:
        return resp
    encoding = encoding_for(resp.mimetype)
    if request.endpoint in REVALIDATED and resp.status_code == 200:
        tag = resp.headers.get("ETag") or body_tag(await resp.get_data())
        resp.headers["Cache-Control"] = REVALIDATE
        resp.headers.pop("Expires", None)
        if request.method in {"GET", "HEAD"} and matches(tag):
            unchanged = not_modified(variant_tag(tag, encoding), REVALIDATE, ["Accept-Encoding"])
            _clean_304(unchanged)
            return unchanged
        resp.headers["ETag"] = tag
    data = await resp.get_data()
    if encoding is None or len(data) < MIN_COMPRESS_BYTES:
        return resp
    resp.set_data(_compress(data, encoding))
    resp.headers["Content-Encoding"] = encoding
    if "ETag" in resp.headers:
        resp.headers["ETag"] = variant_tag(resp.headers["ETag"], encoding)
    return resp


def install(app: Quart) -> None:
    """Install before any other ``after_request``: Quart runs them last-registered first, so
    this one sees every response as it leaves."""
    app.after_request(finish)
