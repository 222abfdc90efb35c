"""The app as a whole, through Quart's test client: headers every response carries, body
limits, and the factory's services."""

from __future__ import annotations

import ast
from email.utils import parsedate_to_datetime

import pytest
from quart import Quart

from figserve.app import create_app
from tests.support.live import ROOT


async def test_html_gets_security_headers(app: Quart) -> None:
    resp = await app.test_client().get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"]
    image = await app.test_client().get("/figures/normal.png?w=60&h=60")
    assert image.headers["X-Content-Type-Options"] == "nosniff"


async def test_request_bodies_over_the_limit_answer_413() -> None:
    app = create_app({"warm_up": False, "max_body_bytes": 1024})
    async with app.test_app():
        body = {"figure": "normal", "params": {}, "pad": "x" * 4096}
        resp = await app.test_client().post("/api/render", json=body)
        assert resp.status_code == 413
        assert resp.mimetype == "application/problem+json"


async def test_dates_in_headers_are_valid_http_dates(client):
    resp = await client.get("/fig/5_3")
    for name in ("Date", "Last-Modified", "Expires"):
        if name in resp.headers:
            parsedate_to_datetime(resp.headers[name])  # raises on an invalid date


async def test_html_has_security_headers(client):
    resp = await client.get("/")
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Referrer-Policy" in resp.headers


def test_create_app_refuses_unknown_settings():
    with pytest.raises(KeyError, match="render_thread"):
        create_app({"render_thread": 3})


async def test_serving_hooks_own_the_render_pool():
    app = create_app({"warm_up": True, "render_threads": 1})
    state = app.extensions["figserve"]
    assert state.renderer is None
    async with app.test_app():
        assert state.renderer is not None and state.renderer.ready
        assert state.renderer.settings.render_threads == 1
    assert state.renderer is None


def test_src_never_imports_pyplot():
    offenders = []
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n in {"matplotlib.pyplot", "pylab"} for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
