"""What live pages are made of: ``figure(..., live=True)``, the gallery's live switch, the script
of live pages, and the stream route's answers that need no streaming."""

from __future__ import annotations

import re
import textwrap
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quart import Quart

from figserve.app import create_app
from figserve.figures import FIGURES
from figserve.live.streams import live_key
from tests.support.html import parse
from tests.support.livepage import METER
from tests.support.usercode import UserFolder
from tests.web.test_errors import BROWSER_PAGE_ACCEPT

PAGE = """
{% extends "base.html" %}
{% block content %}
{{ figure("meter", live=True) }}
{{ figure("meter", colour="C3", w=300, h=200, sizes="300px", live=True) }}
{{ figure("waves", frequency=2, live=True) }}
{{ figure("histogram", bins=12, live=True) }}
{{ figure("meter", colour="red", live=True) }}
{{ figure("meter") }}
{% endblock %}
"""


@pytest.fixture
async def live_app(user_folder: UserFolder):
    (user_folder.root / "data.txt").write_text("5\n")
    user_folder.write("meter.py", textwrap.dedent(METER))
    user_folder.write("pages/live.html", PAGE)
    user_folder.write("pages/none.html", '{% extends "base.html" %}{% block content %}'
                      '{{ figure("waves") }}{% endblock %}')  # fmt: skip
    app = create_app(
        {"warm_up": False, "figures": "meter", "pages": str(user_folder.root / "pages")}
    )
    async with app.test_app():
        yield app


async def _html(app: Quart, path: str) -> str:
    resp = await app.test_client().get(path, headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert resp.status_code == 200, path
    return await resp.get_data(as_text=True)


async def test_live_figures_carry_their_key_and_the_page_its_script_once(live_app: Quart):
    html = await _html(live_app, "/pages/live")
    meter, small, waves, histogram, wrong, still = parse(html).images
    spec = FIGURES.get("meter")
    assert meter["data-live"] == live_key("meter", spec.params())
    assert small["data-live"] == live_key("meter", spec.params(colour="C3"))
    assert small["sizes"] == "300px" and small["width"] == "300"
    assert waves["data-live"] == live_key("waves", FIGURES.get("waves").params(frequency=2))
    # A random figure without a seed has no versions; a wrong one shows its error; a figure
    # without live=True is not followed.
    assert "data-live" not in histogram and "data-live" not in still
    assert "data-figure-error" in wrong and "data-live" not in wrong
    scripts = re.findall(r"<script [^>]*></script>", html)
    assert len(scripts) == 1
    assert re.fullmatch(
        r'<script src="/static/live\.js\?v=[0-9a-f]{12}" data-stream="/live/stream" '
        r'data-max="64" data-stale-note="[^"]+" defer></script>',
        scripts[0],
    )
    # Served fingerprinted, as a script the page's policy allows (same origin, not inline).
    src = re.search(r'src="([^"]+)"', scripts[0]).group(1)
    resp = await live_app.test_client().get(src)
    assert resp.status_code == 200 and resp.mimetype == "text/javascript"
    assert "immutable" in resp.headers["Cache-Control"]
    page = await live_app.test_client().get("/pages/live", headers={"Accept": BROWSER_PAGE_ACCEPT})
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'self'
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]


async def test_a_page_without_live_figures_has_no_script(live_app: Quart):
    assert "<script" not in await _html(live_app, "/pages/none")


async def test_the_gallery_follows_figures_of_changing_data(live_app: Quart):
    index = parse(await _html(live_app, "/")).images
    live = [i for i in index if "data-live" in i]
    assert [i["src"].split("?")[0] for i in live] == ["/figures/meter.png"]
    # The figure page has a live switch for such figures; switched on, its image is live.
    page = await _html(live_app, "/gallery/meter?colour=C2")
    assert 'name="live"' in page
    assert not [i for i in parse(page).images if "data-live" in i]
    page = await _html(live_app, "/gallery/meter?colour=C2&live=1")
    (img,) = parse(page).images
    assert img["data-live"] == live_key("meter", FIGURES.get("meter").params(colour="C2"))
    assert "live" not in img["src"]  # a switch of the page, not a figure parameter
    assert 'name="live" value="1" checked' in page
    # Figures of fixed data have no switch.
    assert 'name="live"' not in await _html(live_app, "/gallery/waves")


async def test_live_is_a_name_no_figure_parameter_may_take():
    from figserve.figures import FigureParams, Registry

    class Bad(FigureParams):
        live: bool = False

    with pytest.raises(ValueError, match="reserved parameter names"):
        Registry().figure("bad", title="b", description="b", params=Bad)(lambda fig, p: None)


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 400), ("f=/figures/nosuch.png", 400), ("&".join(["f=/figures/meter.png"] * 65), 400)],
)
async def test_the_stream_route_refuses_before_it_streams(live_app: Quart, query, status):
    resp = await live_app.test_client().get(f"/live/stream?{query}")
    assert resp.status_code == status
    assert resp.mimetype == "application/problem+json"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_no_stream_while_the_service_is_down():
    app = create_app({"warm_up": False})
    resp = await app.test_client().get("/live/stream?f=/figures/waves.png")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"


# -- whatever a client puts in f=, the stream route answers with a 400 or follows it ---------

PARAM_NAMES = ["colour", "n", "w", "h", "dpr", "dpi", "format", "_v", "seed", "x", ""]
values = st.one_of(
    st.text(max_size=12),
    st.integers(-10, 5000).map(str),
    st.sampled_from(["C1", "1e400", "nan", "-0", "3.5", "", " 7", "\x00", "\uff431"]),
)
paths = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "/figures/meter.png",
            "/figures/meter.svg",
            "/figures/waves.webp",
            "/figures/normal.png",
            "/figures/nosuch.png",
            "/figures/meter",
            "//evil.example/figures/meter.png",
            "/figures/../x.png",
        ]
    ),
)
targets = st.builds(
    lambda path, pairs: path + ("?" + urlencode(pairs) if pairs else ""),
    paths,
    st.lists(st.tuples(st.sampled_from(PARAM_NAMES), values), max_size=5),
)


@pytest.mark.property
@settings(max_examples=400, deadline=None)
@given(text=st.one_of(targets, st.text(max_size=300)))
def test_any_image_a_client_names_is_followed_or_refused_cleanly(text: str) -> None:
    from figserve.validation import Invalid
    from figserve.web.live import viewed_image

    try:
        viewed = viewed_image(text, "f[0]", FIGURES, 6_000_000)
    except Invalid as exc:
        assert [e.param for e in exc.errors] == ["f[0]"] and exc.errors[0].message
        return
    assert viewed.spec.deterministic(viewed.params)
    assert viewed.key == live_key(viewed.spec.name, viewed.params)
