"""Routes through Quart's test client, with the serving hooks running (issue 2)."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser

import pytest

from .conftest import decode

BROWSER_IMG_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
BROWSER_PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def parse(html: str) -> Images:
    parser = Images()
    parser.feed(html)
    return parser


async def test_fig_is_a_fresh_png_every_time(client):
    first = await client.get("/fig/5_3")
    second = await client.get("/fig/5_3")
    assert first.status_code == 200
    assert first.content_type == "image/png"
    assert first.headers["Cache-Control"] == "no-store"
    assert "ETag" not in first.headers
    data = await first.get_data()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert decode(data).size == (400, 300)
    assert data != await second.get_data()


@pytest.mark.parametrize("path", ["/fig/-2.5_0.5", "/fig/+1.25_.5", "/fig/0_1", "/fig/100_5"])
async def test_fig_accepts_signed_decimals(client, path):
    resp = await client.get(path)
    assert resp.status_code == 200
    assert decode(await resp.get_data()).format == "PNG"


async def test_dates_in_headers_are_valid_http_dates(client):
    resp = await client.get("/fig/5_3")
    for name in ("Date", "Last-Modified", "Expires"):
        if name in resp.headers:
            parsedate_to_datetime(resp.headers[name])  # raises on an invalid date


async def test_normal_page_embeds_sized_described_images(client):
    resp = await client.get("/normal/5_3")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/html")
    page = parse(await resp.get_data(as_text=True))
    assert "5" in page.title and "3" in page.title
    assert len(page.images) >= 4
    assert page.images[0]["src"] == "/fig/5_3"
    for img in page.images:
        assert img["width"] == "400" and img["height"] == "300"
        assert img["alt"].startswith("Scatter of 100 random-normal points")
        assert re.fullmatch(r"\S+ 1x, \S+dpr=2 2x", img["srcset"])
    # Every image on the page answers with a PNG.
    for img in page.images:
        assert (await client.get(img["src"])).status_code == 200


async def test_normal_page_variants_stay_within_limits(client):
    resp = await client.get("/normal/1000000_1000000")
    assert resp.status_code == 200
    page = parse(await resp.get_data(as_text=True))
    assert len(page.images) >= 4
    for img in page.images:
        assert (await client.get(img["src"])).status_code == 200


async def test_index_links_the_pages_and_every_figure(client, app):
    resp = await client.get("/")
    assert resp.status_code == 200
    html = await resp.get_data(as_text=True)
    assert 'href="/normal/5_3"' in html
    for spec in app.extensions["figserve"].registry:
        assert f"/figures/{spec.name}.png" in html
        assert f'action="/gallery/{spec.name}"' in html


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


async def test_html_has_security_headers(client):
    resp = await client.get("/")
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "Referrer-Policy" in resp.headers


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
