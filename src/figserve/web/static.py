"""Static files at fingerprinted URLs: ``url_for('static', filename='style.css')`` gives
``/static/style.css?v=<hash of the content>``, which may be cached for a year (``immutable``):
a changed file has a new URL. The same file asked for without (or with an old) fingerprint is
kept five minutes and revalidated by its ETag. Files are small and read once per change.

figserve's own stylesheet is small (under 2 KB compressed), so pages carry it inline,
``{{ stylesheet() }}`` in ``base.html``: a stylesheet fetched from ``<head>`` holds the first
paint back by a round trip. The page's Content-Security-Policy allows exactly that style by
its hash (``html_csp``), and no other inline style."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup
from quart import Quart, Response
from quart import request as current_request
from quart_schema import hide
from werkzeug.security import safe_join

from .errors import Problem
from .transfer import COMPRESSIBLE, encoding_for, matches, not_modified, variant_tag

IMMUTABLE = "public, max-age=31536000, immutable"
UNVERSIONED = "public, max-age=300"
FINGERPRINT = 12  # hex digits of the content hash in the URL
MAX_STATIC_BYTES = 4 * 1024 * 1024
STYLESHEET = "style.css"
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
# Pages: scripts and styles from this site only, and the inline stylesheet by its hash.
_HTML_CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'; "
    "style-src 'self'{inline}"
)
_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class _File:
    stamp: tuple[int, int]  # mtime_ns, size: read again when either changes
    data: bytes
    tag: str
    mimetype: str


class StaticFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, _File] = {}
        self._inlined: dict[str, tuple[str, str, str]] = {}

    def get(self, filename: str) -> _File | None:
        path = safe_join(str(self.folder), filename)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not Path(path).is_file() or st.st_size > MAX_STATIC_BYTES:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        known = self._files.get(path)
        if known is None or known.stamp != stamp:
            data = Path(path).read_bytes()
            mimetype = _TYPES.get(Path(path).suffix) or (
                mimetypes.guess_type(path)[0] or "application/octet-stream"
            )
            digest = hashlib.sha256(data).hexdigest()
            known = self._files[path] = _File(stamp, data, f'"{digest[:32]}"', mimetype)
        return known

    def fingerprint(self, filename: str) -> str | None:
        found = self.get(filename)
        return None if found is None else found.tag.strip('"')[:FINGERPRINT]

    def inline_style(self, filename: str = STYLESHEET) -> Markup:
        """``<style>`` with the file's text, for the ``<head>`` of a page."""
        found = self._inline(filename)
        return Markup("") if found is None else Markup(f"<style>{found[0]}</style>")

    def html_csp(self, filename: str = STYLESHEET) -> str:
        """The Content-Security-Policy of a page that carries ``inline_style(filename)``."""
        found = self._inline(filename)
        return _HTML_CSP.format(inline="" if found is None else f" 'sha256-{found[1]}'")

    def _inline(self, filename: str) -> tuple[str, str] | None:
        """The file's text as a ``<style>`` holds it, and its CSP hash (kept per version)."""
        found = self.get(filename)
        if found is None:
            return None
        known = self._inlined.get(filename)
        if known is None or known[0] != found.tag:
            # Comments stay in the file (for its readers), out of every page. A stylesheet
            # cannot close the element early: "</" never occurs in it.
            css = _COMMENT.sub("", found.data.decode()).replace("</", "<\\/")
            css = "\n".join(line.strip() for line in css.splitlines() if line.strip())
            digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
            known = self._inlined[filename] = (found.tag, css, digest)
        return known[1], known[2]


def install(app: Quart, folder: Path) -> StaticFiles:
    """Serve ``folder`` at ``/static/`` (endpoint ``static``) with fingerprinted URLs."""
    files = StaticFiles(folder)

    async def static(filename: str) -> Response:
        found = files.get(filename)
        if found is None:
            raise Problem(404, "Not Found", f"There is no static file {filename[:80]!r}.")
        fresh = current_request.args.get("v") == found.tag.strip('"')[:FINGERPRINT]
        cache = IMMUTABLE if fresh else UNVERSIONED
        if matches(found.tag):
            vary = ["Accept-Encoding"] if found.mimetype in COMPRESSIBLE else []
            return not_modified(variant_tag(found.tag, encoding_for(found.mimetype)), cache, vary)
        resp = Response(found.data, mimetype=found.mimetype)
        resp.headers["ETag"] = found.tag
        resp.headers["Cache-Control"] = cache
        return resp

    app.add_url_rule("/static/<path:filename>", "static", hide(static), methods=["GET"])
    app.jinja_env.globals["stylesheet"] = files.inline_style

    @app.url_defaults
    def _fingerprint(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = files.fingerprint(values["filename"])
            if version is not None:
                values["v"] = version

    return files
