""" "This data changed now": the operator's endpoint and the Python call for a user's scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from figserve.client import FigserveError, data_changed
from tests.live.test_versions import _colour, _url
from tests.support.live import ROOT, LiveServer, live_server
from tests.support.livedata import FAST_REFRESH, Source

TOKEN = "an-operator-token-of-some-length"
JSON = {"Accept": "application/json"}


@pytest.fixture
def live_config() -> dict:
    return {"warm_up": False, "version_timeout": 1.0, "admin_token": TOKEN}


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


async def test_the_operator_says_data_changed_and_it_shows_at_once(live_client, source):
    url = _url(source, "live_slow")  # refresh: an hour
    first = await live_client.get(url)
    source.set("red")
    assert _colour(await (await live_client.get(url)).get_data()) == (255, 255, 255)
    resp = await live_client.post("/api/figures/live_slow/changed", headers=_auth())
    assert resp.status_code == 200
    assert await resp.get_json() == {"figure": "live_slow", "params": None, "changed": 1}
    now = await live_client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert now.status_code == 200
    assert _colour(await now.get_data()) == (255, 0, 0)


async def test_the_change_may_be_narrowed_to_parameters(live_client, source):
    await live_client.get(_url(source, "live_slow", label="a"))
    await live_client.get(_url(source, "live_slow", label="b"))
    source.set("blue")
    checks = source.checks()
    resp = await live_client.post(
        "/api/figures/live_slow/changed", json={"params": {"label": "a"}}, headers=_auth()
    )
    assert (await resp.get_json())["changed"] == 1
    assert source.checks() == checks + 1  # only label=a was asked again
    stays = await live_client.get(_url(source, "live_slow", label="b"))
    assert _colour(await stays.get_data()) == (255, 255, 255)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (JSON, 401),
        ({"Authorization": "Bearer not-the-token-at-all", **JSON}, 401),
        ({"Authorization": f"Basic {TOKEN}", **JSON}, 401),
    ],
)
async def test_only_the_operator_may_say_so(live_client, headers, status):
    resp = await live_client.post("/api/figures/live_slow/changed", headers=headers)
    assert resp.status_code == status
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.content_type == "application/problem+json"


async def test_a_cross_site_request_is_refused(live_client):
    resp = await live_client.post(
        "/api/figures/live_slow/changed",
        headers={**_auth(), "Sec-Fetch-Site": "cross-site"},
    )
    assert resp.status_code == 403


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/api/figures/nosuch/changed", None, 404, None),
        ("/api/figures/waves/changed", None, 409, None),
        ("/api/figures/live_slow/changed", {"params": {"colour": "x"}}, 400, "params.colour"),
        ("/api/figures/live_slow/changed", {"params": {"label": "A B"}}, 400, "params.label"),
        ("/api/figures/live_slow/changed", {"params": [1]}, 400, "params"),
        ("/api/figures/live_slow/changed", {"figure": "x"}, 400, "figure"),
        ("/api/figures/live_slow/changed?x=1", None, 400, "x"),
    ],
)
async def test_wrong_requests_are_4xx(live_client, path, body, status, param):
    sent = {} if body is None else {"json": body}
    resp = await live_client.post(path, headers=_auth(), **sent)
    assert resp.status_code == status
    problem = await resp.get_json()
    if param is not None:
        assert problem["param"] == param


async def test_without_an_admin_token_configured_the_endpoint_is_closed(client):
    resp = await client.post("/api/figures/waves/changed", headers=_auth())
    assert resp.status_code == 403
    assert "FIGSERVE_ADMIN_TOKEN" in (await resp.get_json())["detail"]


# -- from a user's script, against a real server ----------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {"FIGSERVE_ADMIN_TOKEN": TOKEN, "FIGSERVE_WARM_UP": "false"}
    with live_server(workers=1, env=env, app="tests.support.app:app") as srv:
        yield srv


@pytest.mark.live
def test_a_script_says_data_changed(server: LiveServer, tmp_path) -> None:
    source = Source(tmp_path / "source")
    url = server.url + _url(source, "live_slow")
    assert httpx.get(url, timeout=30).status_code == 200
    assert httpx.get(url, timeout=30).headers["X-Render-Cache"] == "hit"  # below Quart, if kept
    source.set("lime")
    answer = data_changed(server.url, "live_slow", token=TOKEN)
    assert answer == {"figure": "live_slow", "params": None, "changed": 1}
    assert _colour(httpx.get(url, timeout=30).content) == (0, 255, 0)
    narrowed = data_changed(
        server.url, "live_slow", token=TOKEN, params={"source": str(source.folder)}
    )
    assert narrowed["params"] == {"source": str(source.folder)} and narrowed["changed"] == 0
    with pytest.raises(FigserveError) as wrong:
        data_changed(server.url, "live_slow", token="not-the-token-at-all")
    assert wrong.value.status == 401 and "admin token" in str(wrong.value)
    with pytest.raises(FigserveError) as unknown:
        data_changed(server.url, "nosuch", token=TOKEN)
    assert unknown.value.status == 404


@pytest.mark.live
def test_the_command_line_says_data_changed(server: LiveServer, tmp_path) -> None:
    source = Source(tmp_path / "source")
    url = server.url + _url(source, "live_slow")
    httpx.get(url, timeout=30)
    source.set("navy")
    run = [sys.executable, "-m", "figserve.client", server.url, "live_slow"]
    env = {**os.environ, "FIGSERVE_ADMIN_TOKEN": TOKEN}
    done = subprocess.run(
        [*run, "--param", f"source={source.folder}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"changed": 1' in done.stdout
    assert _colour(httpx.get(url, timeout=30).content) == (0, 0, 128)
    env["FIGSERVE_ADMIN_TOKEN"] = "not-the-token-at-all"
    refused = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith("figserve: 401 Invalid admin token")


@pytest.mark.live
def test_a_real_server_serves_new_data_within_refresh(server: LiveServer, tmp_path) -> None:
    source = Source(tmp_path / "source")
    url = server.url + _url(source)  # refresh: half a second
    first = httpx.get(url, timeout=30)
    again = httpx.get(url, timeout=30, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    source.set("purple")
    changed = time.monotonic()
    while _colour(httpx.get(url, timeout=30).content) != (128, 0, 128):
        # Cached answers (below Quart too) last until the version must be checked again.
        assert time.monotonic() - changed < FAST_REFRESH + 3
