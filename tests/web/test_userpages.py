"""FIGSERVE_PAGES: the user's own pages, the figure() helper, and names that must not escape."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart

from figserve.app import create_app
from figserve.web.embed import DENSITIES, EAGER, figure
from tests.conftest import decode
from tests.support.html import parse
from tests.support.usercode import UserFolder, spiral_module
from tests.web.test_errors import BROWSER_IMG_ACCEPT, BROWSER_PAGE_ACCEPT

PAGE = """
{% extends "base.html" %}
{% block title %}Mine{% endblock %}
{% block content %}
<h1>My page</h1>
{{ figure("myspiral", turns=4, seed=1) }}
{{ figure("histogram", bins=20, seed=2, w=300, h=200, alt="Twenty bins", class_="wide") }}
{{ figure("waves", format="svg") }}
{% endblock %}
"""


@pytest.fixture
async def pages_app(user_folder: UserFolder):
    user_folder.write("myspiral.py", spiral_module())
    user_folder.write("pages/mine.html", PAGE)
    user_folder.write(
        "pages/alone.html", "<!doctype html><title>Alone</title>{{ figure('waves') }}"
    )
    user_folder.write("pages/_layout.html", "{% block x %}{% endblock %}")
    app = create_app(
        {"warm_up": False, "figures": "myspiral", "pages": str(user_folder.root / "pages")}
    )
    async with app.test_app():
        yield app


async def test_a_user_page_extends_the_base_and_embeds_figures(pages_app: Quart) -> None:
    client = pages_app.test_client()
    resp = await client.get("/pages/mine", headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = await resp.get_data(as_text=True)
    assert '<a class="brand" href="/">figserve</a>' in html  # figserve's base
    spiral, hist, waves = parse(html).images
    # Deterministic figures are pinned to their version (see tests/web/test_versioned.py).
    assert re.fullmatch(
        r"/figures/myspiral\.png\?turns=4&seed=1&w=400&h=300&_v=[0-9a-f]{16}", spiral["src"]
    )
    assert spiral["srcset"].split(", ")[-1] == f"{spiral['src']}&dpr=3 3x"
    assert spiral["alt"] == "Spiral of 4 turns" and spiral["fetchpriority"] == "high"
    assert (hist["width"], hist["height"], hist["alt"], hist["class"]) == (
        "300",
        "200",
        "Twenty bins",
        "wide",
    )
    assert "fetchpriority" not in hist and "loading" not in hist
    assert re.fullmatch(r"/figures/waves\.svg\?w=400&h=300&_v=[0-9a-f]{16}", waves["src"])
    assert "srcset" not in waves
    for img in (spiral, hist, waves):
        answer = await client.get(img["src"], headers={"Accept": BROWSER_IMG_ACCEPT})
        assert answer.status_code == 200
        assert answer.mimetype.startswith("image/")


async def test_a_standalone_page_needs_no_base(pages_app: Quart) -> None:
    html = await (await pages_app.test_client().get("/pages/alone")).get_data(as_text=True)
    assert html.startswith("<!doctype html><title>Alone</title><picture><source ")
    assert "figserve</a>" not in html


async def test_many_figures_load_the_first_first_and_the_far_ones_lazily(
    user_folder: UserFolder,
) -> None:
    lines = [f"{{{{ figure('waves', components={k % 8 + 1}, sizes='50vw') }}}}" for k in range(9)]
    user_folder.write("pages/many.html", "\n".join(lines))
    app = create_app({"warm_up": False, "pages": str(user_folder.root / "pages")})
    async with app.test_app():
        html = await (await app.test_client().get("/pages/many")).get_data(as_text=True)
    images = parse(html).images
    assert [i.get("fetchpriority") for i in images] == ["high"] + [None] * 8
    assert [i.get("loading") for i in images] == [None] * EAGER + ["lazy"] * (9 - EAGER)
    # With sizes, the candidates are width descriptors: the same figure at 400, 600, 800...
    assert images[0]["sizes"] == "50vw"
    assert [c.rsplit(" ", 1)[1] for c in images[0]["srcset"].split(", ")] == [
        f"{round(400 * d)}w" for d in DENSITIES
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("figure('histogram', bins=0)", "bins: Input should be greater than or equal to 1"),
        ("figure('histogram', colour='red')", "colour: unknown parameter"),
        ("figure('histogram', w=10)", "w: Input should be greater than or equal to 50"),
        ("figure('nosuch', a=1)", "no figure 'nosuch'"),
        ("figure('waves', format='gif')", "no format 'gif'"),
        ("figure('histogram', title='a\u200bb')", "title: U+200B (ZERO WIDTH SPACE)"),
    ],
)
async def test_a_wrong_figure_shows_its_error_in_place(
    user_folder: UserFolder, call: str, message: str
) -> None:
    user_folder.write("pages/bad.html", f"<p>before</p>{{{{ {call} }}}}<p>after</p>")
    app = create_app({"warm_up": False, "pages": str(user_folder.root / "pages")})
    async with app.test_app():
        client = app.test_client()
        resp = await client.get("/pages/bad", headers={"Accept": BROWSER_PAGE_ACCEPT})
        assert resp.status_code == 200  # the page is fine; one figure is not
        html = await resp.get_data(as_text=True)
        assert "<p>before</p>" in html and "<p>after</p>" in html
        (img,) = parse(html).images
        assert "data-figure-error" in img and message in img["alt"]
        # The image's URL answers with the error drawn as an image, at the box of the figure.
        answer = await client.get(img["src"], headers={"Accept": BROWSER_IMG_ACCEPT})
        assert 400 <= answer.status_code < 500
        assert answer.mimetype == "image/svg+xml"
        assert (img["width"], img["height"]) == ("400", "300")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(["waves", "histogram", "heatmap", "nosuch", "../x", "a b"]),
    keywords=st.dictionaries(
        st.sampled_from(["bins", "n", "w", "h", "dpr", "dpi", "format", "cmap", "seed", "zz"]),
        st.one_of(
            st.integers(-5, 5000),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=12),
            st.booleans(),
            st.none(),
        ),
        max_size=4,
    ),
)
async def test_any_figure_call_gives_an_image_or_its_error_image(
    pages_app: Quart, name: str, keywords: dict
) -> None:
    # Whatever a page asks, the helper never fails, and its <img> answers with an image: the
    # figure when the call is valid, the error drawn as an image when it is not.
    async with pages_app.test_request_context("/pages/x"):
        page = parse(str(figure(name, **keywords)))
    (img,) = page.images
    answer = await pages_app.test_client().get(img["src"], headers={"Accept": BROWSER_IMG_ACCEPT})
    if "data-figure-error" in img:
        assert 400 <= answer.status_code < 500 and answer.mimetype == "image/svg+xml", img
        assert not page.sources  # an error image stands alone
    else:
        assert answer.status_code == 200, (img, await answer.get_data(as_text=True))
        if answer.mimetype != "image/svg+xml":
            image = decode(await answer.get_data())
            if "dpi" not in keywords:  # below 100 dpi an image has fewer pixels than its box
                assert image.size[0] >= int(img["width"]) - 1
        # A PNG not asked for by format has its WebP beside it: the same figure and size.
        # (format=None is "not given", as every keyword whose value is None.)
        offered = answer.mimetype == "image/png" and keywords.get("format") is None
        assert len(page.sources) == (1 if offered else 0), (img, page.sources)
        for source in page.sources:
            first = source["srcset"].split(", ")[0].rsplit(" ", 1)[0]
            assert first == img["src"].replace(".png?", ".webp?", 1)
            webp = await pages_app.test_client().get(first, headers={"Accept": BROWSER_IMG_ACCEPT})
            assert (webp.status_code, webp.mimetype) == (200, "image/webp")
            assert decode(await webp.get_data()).size == image.size


@pytest.mark.parametrize(
    "path",
    [
        "/pages/..",
        "/pages/../pages/mine",
        "/pages/..%2Fsecret",
        "/pages/%2Fetc%2Fpasswd",
        "/pages//etc/passwd",
        "/pages/_layout",
        "/pages/base",
        "/pages/mine.html",
        "/pages/outside",
        "/pages/nosuch",
        "/pages/" + "a" * 120,
    ],
)
async def test_page_names_never_reach_outside_the_folder(
    pages_app: Quart, user_folder: UserFolder, path: str
) -> None:
    secret = user_folder.write("secret.html", "SECRET")
    os.symlink(secret, user_folder.root / "pages" / "outside.html")
    resp = await pages_app.test_client().get(path, headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert resp.status_code in {404, 308}, path
    body = await resp.get_data(as_text=True)
    assert "SECRET" not in body and "root:" not in body


async def test_a_symlink_inside_the_folder_is_served(user_folder: UserFolder) -> None:
    target = user_folder.write("pages/real.html", "REAL")
    os.symlink(target, user_folder.root / "pages" / "alias.html")
    app = create_app({"warm_up": False, "pages": str(user_folder.root / "pages")})
    async with app.test_app():
        resp = await app.test_client().get("/pages/alias")
    assert (resp.status_code, await resp.get_data(as_text=True)) == (200, "REAL")


async def test_an_edited_page_is_served_as_edited(user_folder: UserFolder) -> None:
    page = user_folder.write("pages/live.html", "first")
    app = create_app({"warm_up": False, "pages": str(user_folder.root / "pages")})
    async with app.test_app():
        client = app.test_client()
        assert await (await client.get("/pages/live")).get_data(as_text=True) == "first"
        page.write_text("second")
        stat = page.stat()
        os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        assert await (await client.get("/pages/live")).get_data(as_text=True) == "second"


def test_a_missing_pages_folder_fails_the_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"FIGSERVE_PAGES=.*no such folder"):
        create_app({"warm_up": False, "pages": str(tmp_path / "nope")})


async def test_figure_urls_carry_the_parameters_given(pages_app: Quart) -> None:
    async with pages_app.test_request_context("/pages/x"):
        (img,) = parse(str(figure("timeseries", start=dt.date(2020, 5, 1), seed=None))).images
    query = dict(parse_qsl(urlsplit(img["src"]).query))
    assert query == {"start": "2020-05-01", "w": "400", "h": "300"}
