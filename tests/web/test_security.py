"""Checks every route shares: state-changing requests from other sites are refused, no response
reflects the Host header, and nothing is cached unless it says so."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from quart import Quart

from figserve.app import create_app
from figserve.web.security import UNSAFE_METHODS, relative_location
from tests.support.live import LiveServer

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
JOB = {"items": [{"figure": "waves", "format": "svg"}], "output": "zip"}
FORM = urlencode([("figure", "waves"), ("output", "zip"), ("format", "svg")])
FORM_TYPE = "application/x-www-form-urlencoded"


@pytest.fixture
def app_config(tmp_path: Path) -> dict:
    return {
        "warm_up": False,
        "jobs_dir": str(tmp_path / "jobs"),
        "job_threads": 0,
        "job_max_active": 10**6,
        "job_max_client_active": 10**6,
        "job_results_quota_bytes": 10**15,
    }


def unsafe_routes(app: Quart) -> list[tuple[str, str]]:
    """Every (method, path) of the app that changes state, with a path that matches it."""
    out = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "0" * 32, rule.rule)
        out += [(method, path) for method in sorted(rule.methods & UNSAFE_METHODS)]
    assert ("POST", "/jobs") in out and ("DELETE", "/jobs/" + "0" * 32) in out
    return out


async def job_count(client) -> int:
    return len((await (await client.get("/jobs")).get_json())["jobs"])


# --- cross-site requests -------------------------------------------------------------------------

CROSS = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "https://evil.example"},
    {"Origin": "http://localhost.evil.example"},
    {"Origin": "https://localhost"},  # another scheme is another origin
    {"Origin": "http://localhost:8080"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},  # the browser knows best
]


@pytest.mark.parametrize("headers", CROSS)
async def test_every_state_changing_route_refuses_other_sites(app, client, headers):
    for method, path in unsafe_routes(app):
        for body in ({"json": JOB}, {"data": FORM, "headers": {"Content-Type": FORM_TYPE}}):
            sent = {**body.get("headers", {}), **headers}
            resp = await client.open(
                path,
                method=method,
                headers=sent,
                **{k: v for k, v in body.items() if k != "headers"},
            )
            assert resp.status_code == 403, (method, path, headers)
            problem = await resp.get_json()
            assert problem["title"] == "Cross-site request refused"
    assert await job_count(client) == 0


SAME = [
    {},  # curl and other clients that are not browsers
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},
    {"Origin": "http://localhost"},
    {"Origin": "http://LOCALHOST:80"},  # the default port, in any case
]


@pytest.mark.parametrize("headers", SAME)
async def test_same_origin_browsers_and_other_clients_are_served(client, headers):
    resp = await client.post("/jobs", json=JOB, headers=headers)
    assert resp.status_code == 202
    resp = await client.post("/jobs", data=FORM, headers={**headers, "Content-Type": FORM_TYPE})
    assert resp.status_code == 303
    job = (await (await client.get("/jobs")).get_json())["jobs"][0]
    assert (await client.delete(job["url"], headers=headers)).status_code == 200


async def test_a_configured_public_origin_counts_as_same_origin(app_config):
    application = create_app({**app_config, "public_url": "https://figs.example.org"})
    async with application.test_app():
        client = application.test_client()
        behind_proxy = {"Host": "127.0.0.1:8000", "Origin": "https://figs.example.org"}
        assert (await client.post("/jobs", json=JOB, headers=behind_proxy)).status_code == 202
        other = {"Host": "127.0.0.1:8000", "Origin": "https://other.example.org"}
        assert (await client.post("/jobs", json=JOB, headers=other)).status_code == 403


async def test_reading_is_never_refused(client):
    for headers in CROSS:
        for path in ("/", "/fig/5_3?seed=1", "/jobs", "/api/figures"):
            assert (await client.get(path, headers=headers)).status_code == 200


origins = st.builds(
    "{}://{}{}".format,
    st.sampled_from(["http", "https", "ftp", "chrome-extension"]),
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z]{2,6}){0,2}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8000", ":1"]),
)


@FAST
@given(origin=origins, method=st.sampled_from(sorted(UNSAFE_METHODS)))
async def test_any_other_origin_is_refused(app, origin, method):
    assume(origin not in {"http://localhost", "http://localhost:80"})
    resp = await app.test_client().open(
        "/jobs", method=method, json=JOB, headers={"Origin": origin}
    )
    assert resp.status_code == 403


@FAST
@given(site=st.text(max_size=20))
async def test_any_fetch_site_but_same_origin_is_refused(app, site):
    assume(site.strip().lower() not in {"same-origin", "none"})
    assume(site.isprintable() and site.isascii())
    resp = await app.test_client().post("/jobs", json=JOB, headers={"Sec-Fetch-Site": site})
    assert resp.status_code == 403


# --- the Host header -----------------------------------------------------------------------------

hosts = st.from_regex(r"[a-z]{8,14}\.(example|invalid|test)(:[1-9][0-9]{1,4})?", fullmatch=True)


async def everything_with_host(app: Quart, host: str) -> list[tuple[int, str]]:
    """Status and text (headers and body) of a tour of the site, with ``host`` as Host."""
    client = app.test_client()
    h = {"Host": host}
    responses = [
        await client.get(path, headers=h)
        for path in (
            "/",
            "/gallery/histogram?seed=3&bins=12",
            "/gallery/histogram?bins=0",
            "/normal/5_3",
            "//fig//5_3",
            "/fig//5_3?seed=1",
            "/gallery//waves",
            "/api//figures",
            "/nothing/here",
            "/docs",
            "/openapi.json",
            "/api/figures",
            "/jobs",
        )
    ]
    created = await client.post("/jobs", json=JOB, headers=h)
    responses.append(created)
    job_url = created.headers["Location"]
    responses.append(await client.get(job_url, headers={**h, "Accept": "text/html"}))
    responses.append(
        await client.post("/jobs", data=FORM, headers={**h, "Content-Type": FORM_TYPE})
    )
    out = []
    for resp in responses:
        text = str(resp.headers) + (await resp.get_data()).decode("utf-8", "replace")
        out.append((resp.status_code, text))
    return out


@FAST
@given(host=hosts)
async def test_no_response_reflects_the_host_header(app, host):
    name = host.split(":")[0]
    for status, text in await everything_with_host(app, host):
        assert name not in text, status
        assert status < 500


async def test_routing_redirects_are_relative(client):
    resp = await client.get("//fig//5_3?seed=1", headers={"Host": "evil.example"})
    assert resp.status_code == 308
    assert resp.headers["Location"] == "/fig/5_3?seed=1"


@FAST
@given(
    url=st.builds(
        "{}://{}{}{}".format,
        st.sampled_from(["http", "https"]),
        hosts,
        st.text(alphabet="/\\ab.%", max_size=12).map(lambda p: "/" + p),
        st.sampled_from(["", "?a=1", "?x=//evil.example"]),
    )
)
def test_a_relative_location_never_leaves_the_site(url):
    location = relative_location(url)
    assert location.startswith("/")
    assert not location.startswith(("//", "/\\"))
    assert url.split("://", 1)[1].split("/", 1)[0] not in location.split("?")[0]


async def test_the_permalink_uses_the_configured_public_address(app_config):
    application = create_app({**app_config, "public_url": "https://figs.example.org"})
    async with application.test_app():
        resp = await application.test_client().get(
            "/gallery/waves", headers={"Host": "evil.example"}
        )
        html = await resp.get_data(as_text=True)
    assert "<code>https://figs.example.org/figures/waves.png?" in html
    assert "evil.example" not in html


def test_a_public_url_must_be_an_origin():
    for bad in ("figs.example.org", "https://figs.example.org/path?q", "javascript:alert(1)"):
        with pytest.raises(ValueError, match="FIGSERVE_PUBLIC_URL"):
            create_app({"public_url": bad})


@pytest.mark.live
def test_live_redirects_and_errors_do_not_reflect_the_host(web_server: LiveServer):
    for path in ("//fig//5_3", "/gallery//waves", "/nothing"):
        with socket.create_connection(("127.0.0.1", web_server.port), timeout=30) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert b"evil.example" not in data.lower(), data[:400]
        if path.startswith("//") or "//" in path:
            assert data.startswith(b"HTTP/1.1 308")
            location = re.search(rb"\r\nlocation: ([^\r]*)", data, re.IGNORECASE)
            assert location and location.group(1).startswith(b"/")


# --- caching -------------------------------------------------------------------------------------


async def test_only_what_says_so_may_be_cached(client):
    # Pages and documents may be kept only if checked again (they carry an ETag); answers
    # that are private or errors are never kept.
    for path in ("/", "/normal/5_3", "/gallery/waves", "/docs", "/api/figures", "/openapi.json"):
        resp = await client.get(path)
        assert resp.headers["Cache-Control"] == "no-cache" and resp.headers["ETag"], path
    for path in ("/nothing", "/jobs", "/figures/waves.png?w=3"):
        resp = await client.get(path)
        assert resp.headers["Cache-Control"] == "no-store", path
    seeded = await client.get("/figures/waves.png")
    assert seeded.headers["Cache-Control"] == "no-cache" and seeded.headers["ETag"]
    static = await client.get("/static/style.css")
    assert "max-age" in static.headers["Cache-Control"]
