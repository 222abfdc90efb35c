"""The gallery's figure pages: forms in, image and permalink out (issue 3)."""

from __future__ import annotations

import re

import pytest

from figserve.web.embed import DENSITIES
from tests.support.html import parse
from tests.web.test_errors import BROWSER_PAGE_ACCEPT


async def test_figure_page_shows_the_image_and_its_permalink(client):
    resp = await client.get("/gallery/histogram?bins=12&seed=3&w=500&h=300&format=png&title=")
    assert resp.status_code == 200
    html = await resp.get_data(as_text=True)
    img = parse(html).images[0]
    path, _, query = img["src"].partition("?")
    assert path == "/figures/histogram.png"
    pin, *rest = sorted(query.split("&"))
    assert rest == ["bins=12", "h=300", "seed=3", "w=500"]
    assert re.fullmatch(r"_v=[0-9a-f]{16}", pin)  # pinned to the version this page shows
    # A candidate for each density screens have, each the same URL with its dpr.
    densities = [c.rsplit(" ", 1) for c in img["srcset"].split(", ")]
    assert [d for _, d in densities] == [f"{d:g}x" for d in DENSITIES]
    assert [u for u, _ in densities] == [img["src"]] + [
        f"{img['src']}&dpr={d:g}" for d in DENSITIES[1:]
    ]
    # Beside it the same figure in WebP, which browsers take first: the same candidates.
    (source,) = parse(html).sources
    assert source["type"] == "image/webp"
    assert source["srcset"] == img["srcset"].replace("/histogram.png?", "/histogram.webp?")
    assert img["fetchpriority"] == "high"  # the page's one figure comes first
    assert (img["width"], img["height"]) == ("500", "300")
    # The permalink is relative: nothing taken from the Host header (see tests/web/test_pages.py).
    assert "<code>/figures/histogram.png?" in html
    # ... and not pinned: it shows the figure as it is when opened.
    assert "<code>/figures/histogram.png?seed=3&amp;bins=12&amp;w=500&amp;h=300</code>" in html
    shown = await client.get(img["src"])
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # srcset picks the density; a dpr field would pin it on the next submit.
    assert 'name="dpr"' not in html


async def test_unseeded_result_says_it_is_not_permanent(client):
    html = await (await client.get("/gallery/normal")).get_data(as_text=True)
    assert "No seed given" in html


async def test_vector_results_have_no_srcset(client):
    html = await (await client.get("/gallery/waves?format=svg")).get_data(as_text=True)
    img = parse(html).images[0]
    assert img["src"].startswith("/figures/waves.svg") and "srcset" not in img


async def test_pdf_result_is_embedded_as_an_object(client):
    html = await (await client.get("/gallery/waves?format=pdf")).get_data(as_text=True)
    assert '<object data="/figures/waves.pdf' in html


async def test_invalid_form_values_come_back_marked_with_400(client):
    resp = await client.get(
        "/gallery/heatmap?rows=0&cmap=jet", headers={"Accept": BROWSER_PAGE_ACCEPT}
    )
    assert resp.status_code == 400
    html = await resp.get_data(as_text=True)
    assert html.count('class="field invalid"') == 2
    assert 'value="0"' in html  # the user's input is kept


async def test_user_text_is_escaped_in_pages(client):
    resp = await client.get(
        "/gallery/histogram", query_string={"title": "<script>alert(1)</script>"}
    )
    html = await resp.get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html


async def test_unknown_figure_page_is_an_html_404(client):
    resp = await client.get("/gallery/pie", headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert resp.status_code == 404
    assert resp.content_type.startswith("text/html")


async def test_normal_page_embeds_sized_described_images(client):
    resp = await client.get("/normal/5_3")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/html")
    page = parse(await resp.get_data(as_text=True))
    assert "5" in page.title and "3" in page.title
    assert len(page.images) >= 4
    # One window for all: the variants around 5_3 reach from -5 - 3.5 * 3 to 5 + 3.5 * 6,
    # rounded out to steps of 8.
    assert page.images[0]["src"] == "/fig/5_3?lo=-16&hi=32"
    for img in page.images:
        assert img["width"] == "400" and img["height"] == "300"
        assert img["alt"].startswith("Scatter of 100 random-normal points")
        path = img["src"]
        assert path.endswith("?lo=-16&hi=32")
        expected = [f"{path} 1x"] + [f"{path}&dpr={d:g} {d:g}x" for d in DENSITIES[1:]]
        assert img["srcset"].split(", ") == expected
    for img, source in zip(page.images, page.sources, strict=True):
        webp = f"{img['src']}&format=webp"
        expected = [f"{webp} 1x"] + [f"{webp}&dpr={d:g} {d:g}x" for d in DENSITIES[1:]]
        assert source["srcset"].split(", ") == expected
    # The first is fetched first; all six load at once (none waits to be scrolled to).
    assert [img.get("fetchpriority") for img in page.images] == ["high"] + [None] * 5
    assert not any("loading" in img for img in page.images)
    # Every image on the page answers with a PNG.
    for img in page.images:
        assert (await client.get(img["src"])).status_code == 200


@pytest.mark.parametrize(
    "mean_var",
    [
        "1000000_1000000",
        "-1000000_0.001",
        "0_0.0000001",
        "999999.5_1000000",
        "0_" + "0" * 300 + "1",
    ],
)
async def test_normal_page_variants_stay_within_limits(client, mean_var):
    resp = await client.get(f"/normal/{mean_var}")
    assert resp.status_code == 200
    page = parse(await resp.get_data(as_text=True))
    assert len(page.images) >= 4
    windows = {img["src"].split("?")[1] for img in page.images}
    assert len(windows) == 1  # every variant on the same axes
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
