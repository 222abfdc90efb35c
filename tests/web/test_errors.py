"""Error responses: the status, the form each client understands, one log line each, and no
stack trace ever."""

from __future__ import annotations

import logging

import pytest

from figserve.app import create_app
from tests.support.gates import registry_with_test_figures

BROWSER_IMG_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


BROWSER_PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


BAD_PAGES = [
    "/normal/abc",
    "/normal/5_3_1",
    "/normal/5",
    "/normal/5_0",
    "/normal/5_-1",
    "/normal/nan_1",
    "/normal/inf_1",
    "/normal/1e3_1",
    "/normal/5_10000000",
    "/normal/99999999999999999999999_1",
]


@pytest.mark.parametrize("path", BAD_PAGES)
async def test_bad_page_paths_get_an_html_400(client, path):
    resp = await client.get(path, headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert resp.status_code == 400
    assert resp.content_type.startswith("text/html")
    html = await resp.get_data(as_text=True)
    assert "400" in html and ("mean" in html or "var" in html)
    assert "Traceback" not in html


BAD_IMAGES = [
    "/fig/x_1",
    "/fig/5_3_1",
    "/fig/5",
    "/fig/5_0",
    "/fig/5_-3",
    "/fig/nan_1",
    "/fig/1_inf",
    "/fig/2000000_1",
    "/fig/5_3?n=0",
    "/fig/5_3?n=100001",
    "/fig/5_3?w=10",
    "/fig/5_3?dpr=4",
    "/fig/5_3?format=gif",
    "/fig/5_3?seed=-1",
    "/fig/5_3?mean=1",
    "/fig/5_3?bogus=1",
    "/fig/5_3?n=1&n=2",
]


@pytest.mark.parametrize("path", BAD_IMAGES)
async def test_bad_image_requests_get_a_problem_400(client, path):
    resp = await client.get(path, headers={"Accept": "*/*"})
    assert resp.status_code == 400
    assert resp.content_type == "application/problem+json"
    body = await resp.get_json()
    assert body["status"] == 400 and body["title"] and body["detail"]
    assert body["param"]
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/fig/x_1", "/fig/5_0", "/fig/5_3?w=99999"])
async def test_bad_image_requests_from_img_tags_get_an_error_image(client, path):
    resp = await client.get(path, headers={"Accept": BROWSER_IMG_ACCEPT})
    assert resp.status_code == 400
    assert resp.content_type.startswith("image/svg+xml")
    svg = await resp.get_data(as_text=True)
    assert "Figure error 400" in svg
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_unknown_paths_are_404_in_the_clients_language(client):
    html = await client.get("/nope", headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert html.status_code == 404 and html.content_type.startswith("text/html")
    api = await client.get("/nope", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.content_type == "application/problem+json"


async def test_wrong_method_is_405_with_allow(client):
    resp = await client.post("/fig/5_3")
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"]


async def test_one_log_line_per_render_and_per_error_at_filterable_levels(figserve_logs) -> None:
    # Through Quart every time: hits the fast path answers have no render line (the access log
    # has them; tests/web/test_fastpath.py).
    config = {"warm_up": False, "registry": registry_with_test_figures(), "fast_path_entries": 0}
    app = create_app(config)
    async with app.test_app():
        client = app.test_client()
        await client.get("/figures/normal.webp?seed=2&w=120&h=90")
        await client.get("/figures/normal.webp?seed=2&w=120&h=90")
        await client.get("/figures/normal.png?n=0")
        await client.get("/figures/broken.png")
    renders = [r for r in figserve_logs.records if r.name == "figserve.render"]
    lines = [r.getMessage() for r in renders if r.getMessage().startswith("render figure=")]
    assert len(lines) == 2
    # The first render of a figure that has an update path is drawn fresh and kept.
    assert lines[0].startswith(
        "render figure=normal format=webp px=120x90 cache=miss warm=miss bytes="
    )
    assert " cache=hit " in lines[1] and " ms=" in lines[1]
    assert all(r.levelno == logging.INFO for r in renders if r.getMessage() in lines)
    web = {
        r.getMessage().split(" path=")[0]: r.levelno
        for r in figserve_logs.records
        if r.name == "figserve.web"
    }
    assert web["error status=400 title='Invalid parameters' method=GET"] == logging.INFO
    assert web["error status=500 title='Internal Server Error' method=GET"] == logging.ERROR


@pytest.mark.parametrize("accept", ["application/json", "text/html", "image/*", "*/*"])
async def test_no_stack_trace_reaches_a_client(accept: str) -> None:
    app = create_app({"warm_up": False, "registry": registry_with_test_figures()})
    async with app.test_app():
        resp = await app.test_client().get("/figures/broken.png", headers={"Accept": accept})
        body = await resp.get_data(as_text=True)
    assert resp.status_code == 500
    for leak in ("Traceback", "secret internals", "RuntimeError", "/srv/"):
        assert leak not in body
