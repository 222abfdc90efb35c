"""Live figures in one worker: data versions in the identity of an image, how often they are
asked, what each kind of URL says about caching, and what a failing data source gives."""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart

from figserve.app import create_app
from figserve.figures import FIGURES
from tests.conftest import decode
from tests.live.conftest import VERSION_TIMEOUT
from tests.support.html import parse
from tests.support.livedata import FAST_REFRESH, Source, add_live_figures
from tests.support.prometheus import metric
from tests.support.waiting import until

IMMUTABLE = "public, max-age=31536000, immutable"
SIZE = "w=120&h=90"


def _url(source: Source, figure: str = "live", **extra: str) -> str:
    return f"/figures/{figure}.png?{source.query(**extra)}&{SIZE}"


async def _pinned(client, source: Source, figure: str = "live") -> str:
    """The image URL the figure's gallery page shows, pinned: the image is asked first, so its
    version is known and fresh when the page is drawn (asked again if a busy machine took
    longer than the figure's refresh between the two)."""
    for _ in range(20):
        assert (await client.get(_url(source, figure))).status_code == 200
        page = await client.get(f"/gallery/{figure}?{source.query()}&{SIZE}")
        src = parse(await page.get_data(as_text=True)).images[0]["src"]
        if "_v=" in src:
            return src
    raise AssertionError(f"the page of {figure} never pinned its image")


def _pin(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["_v"]


async def _metric(client, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).get_data(as_text=True)
    return metric(text, name, **labels)


def _colour(data: bytes) -> tuple[int, ...]:
    return decode(data).convert("RGB").getpixel((2, 2))


# -- identity and caching --------------------------------------------------------------------


async def test_a_data_change_is_served_within_refresh_and_revalidates(live_client, source):
    url = _url(source)
    first = await live_client.get(url)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-cache"
    old = first.headers["ETag"]
    assert _colour(await first.get_data()) == (255, 255, 255)
    unchanged = await live_client.get(url, headers={"If-None-Match": old})
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == old

    source.set("red")
    changed_at = time.monotonic()
    seen: list = []

    async def served() -> None:
        resp = await live_client.get(url, headers={"If-None-Match": old})
        seen.append(resp)

    while not seen or seen[-1].status_code == 304:
        await served()
        assert time.monotonic() - changed_at < FAST_REFRESH + VERSION_TIMEOUT + 2
    resp = seen[-1]
    # Within refresh seconds (plus a check): the new data, under a new strong ETag.
    assert resp.status_code == 200 and resp.headers["ETag"] != old
    assert _colour(await resp.get_data()) == (255, 0, 0)
    again = await live_client.get(url, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304


async def test_pinned_urls_are_immutable_only_while_their_pin_is_current(live_client, source):
    pinned = await _pinned(live_client, source)
    assert re.fullmatch(r"[0-9a-f]{16}", _pin(pinned))
    current = await live_client.get(pinned)
    assert current.headers["Cache-Control"] == IMMUTABLE
    etag = current.headers["ETag"]
    assert (await live_client.get(pinned, headers={"If-None-Match": etag})).status_code == 304

    source.set("blue")
    versions = live_client.app.extensions["figserve"].versions
    await versions.changed("live")
    stale = await live_client.get(pinned)
    # The pin names yesterday's data: the current image, its own ETag, revalidated, never a
    # redirect and never the old bytes.
    assert stale.status_code == 200
    assert stale.headers["Cache-Control"] == "no-cache"
    assert stale.headers["ETag"] != etag
    assert _colour(await stale.get_data()) == (0, 0, 255)
    # A client that kept the old copy under its old tag gets the new one.
    kept = await live_client.get(pinned, headers={"If-None-Match": etag})
    assert kept.status_code == 200 and kept.headers["ETag"] == stale.headers["ETag"]
    repinned = await _pinned(live_client, source)
    assert _pin(repinned) != _pin(pinned)
    fresh = await live_client.get(repinned)
    assert fresh.headers["Cache-Control"] == IMMUTABLE
    assert fresh.headers["ETag"] == stale.headers["ETag"]


@pytest.mark.parametrize("pin", ["", "a b", "x" * 65, "é", "../x", "1;2"])
async def test_a_malformed_pin_is_a_400(live_client, source, pin):
    resp = await live_client.get(
        "/figures/waves.png", query_string={"_v": pin}, headers={"Accept": "application/json"}
    )
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "_v"


async def test_a_well_formed_pin_of_another_release_gets_the_current_image(live_client):
    resp = await live_client.get("/figures/waves.png?w=90&h=70&_v=0123456789abcdef")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-cache"
    fig = await live_client.get("/fig/1_2?seed=3&_v=abc")
    assert fig.status_code == 200 and fig.headers["Cache-Control"] == "no-cache"
    unseeded = await live_client.get("/figures/histogram.png?w=90&h=70&_v=abc")
    assert unseeded.headers["Cache-Control"] == "no-store"


async def test_pages_pin_deterministic_figures_only(live_client):
    html = await (await live_client.get("/")).get_data(as_text=True)
    for img in parse(html).images:
        urls = [img["src"], *re.findall(r"(\S+) [0-9.]+x", img.get("srcset", ""))]
        for url in urls:
            resp = await live_client.get(url)
            if url.startswith("/figures/live"):
                # Its version is not known before its first check: a plain URL, revalidated.
                assert "_v=" not in url and resp.headers["Cache-Control"] == "no-cache"
            else:  # the gallery's previews are seeded or not random
                assert "_v=" in url and resp.headers["Cache-Control"] == IMMUTABLE, url
    page = await (await live_client.get("/normal/5_3")).get_data(as_text=True)
    assert "_v=" not in page  # new samples on every load: never pinned


# -- how often the source is asked, how often the figure is drawn ---------------------------


async def test_the_version_is_asked_once_per_refresh_whatever_the_requests(live_client, source):
    urls = [_url(source, "live_slow", label=x) for x in ("", "a")]
    sizes = [f"/figures/live_slow.{fmt}?{source.query()}&w={w}&h=80" for fmt, w in
             [("png", 100), ("svg", 100), ("png", 200)]]  # fmt: skip
    responses = await asyncio.gather(*(live_client.get(u) for u in urls + sizes * 10))
    assert {r.status_code for r in responses} == {200}
    # One check per pair (label "" and "a"), not per request, size or format.
    assert source.checks() == 2


async def test_exactly_one_render_per_version_for_many_viewers(live_client, source):
    url = _url(source, "live_slow")
    versions = live_client.app.extensions["figserve"].versions
    for colour in ("white", "green", "purple"):
        source.set(colour)
        await versions.changed("live_slow")
        before = await _metric(
            live_client, "figserve_renders_started_total", figure="live_slow", format="png"
        )
        viewers = await asyncio.gather(*(live_client.get(url) for _ in range(40)))
        assert {r.status_code for r in viewers} == {200}
        assert len({await r.get_data() for r in viewers}) == 1
        after = await _metric(
            live_client, "figserve_renders_started_total", figure="live_slow", format="png"
        )
        assert after - before == 1, colour
    # Going back to an earlier version draws nothing: its image is still cached.
    source.set("green")
    await versions.changed("live_slow")
    before = await _metric(live_client, "figserve_renders_started_total", figure="live_slow")
    back = await live_client.get(url)
    assert back.headers["X-Render-Cache"] == "hit"
    assert _colour(await back.get_data()) == (0, 128, 0)
    assert (
        await _metric(live_client, "figserve_renders_started_total", figure="live_slow") == before
    )


async def test_changed_now_reaches_pages_and_subscribers(live_client, source):
    versions = live_client.app.extensions["figserve"].versions
    queue = versions.subscribe()
    try:
        pinned = await _pinned(live_client, source, "live_slow")
        generation = versions.generation
        source.set("black")
        assert await versions.changed("live_slow", {"source": str(source.folder)}) == 1
        change = queue.get_nowait()
        assert (change.figure, change.params["source"]) == ("live_slow", str(source.folder))
        assert change.pin != _pin(pinned) and change.data == "s:black"
        assert versions.generation > generation
        # Page caches key on it.
        assert live_client.app.extensions["figserve"].page_generation() == versions.generation
        # Narrowed to other parameters, nothing is checked again.
        checks = source.checks()
        assert await versions.changed("live_slow", {"label": "other"}) == 0
        assert source.checks() == checks
    finally:
        versions.unsubscribe(queue)


async def test_a_watched_pair_is_checked_every_refresh_until_unwatched(live_app: Quart, source):
    state = live_app.extensions["figserve"]
    spec = state.registry.get("live")
    params = spec.params(**source.params())
    versions = state.versions
    queue = versions.subscribe()
    versions.watch(spec, params)
    try:
        await until(lambda: source.checks() >= 3, "three checks of a watched pair", 10)
        source.set("orange")
        change = await asyncio.wait_for(queue.get(), 10)
        assert change.data == "s:orange"
    finally:
        versions.unwatch(spec, params)
        versions.unsubscribe(queue)
    checks = source.checks()
    # Not watched, not shown on a page: nobody asks its source any more.
    await asyncio.sleep(FAST_REFRESH * 4)  # a span with nothing to wait for: checks must not come
    assert source.checks() <= checks + 1  # at most the one that was under way


# -- a source that fails ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["raise", "hang", "list", "nan", "long", "none"])
async def test_a_failing_source_without_a_good_version_is_a_503(live_client, source, mode):
    source.mode(mode)
    t0 = time.monotonic()
    resp = await live_client.get(_url(source, "live_slow"), headers={"Accept": "application/json"})
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.content_type == "application/problem+json"
    assert "cannot read" not in await resp.get_data(as_text=True)  # the source's message is logged
    assert time.monotonic() - t0 < VERSION_TIMEOUT + 3  # a hung source is stopped at its deadline
    img = await live_client.get(_url(source, "live_slow"), headers={"Accept": "image/*"})
    assert img.status_code == 503 and img.content_type.startswith("image/svg+xml")


@pytest.mark.parametrize("mode", ["raise", "hang", "nan"])
async def test_a_failing_source_keeps_the_last_good_image(live_client, source, mode, figserve_logs):
    url = _url(source)
    good = await live_client.get(url)
    source.mode(mode)
    versions = live_client.app.extensions["figserve"].versions
    await versions.changed("live")
    stale = await live_client.get(url)
    assert stale.status_code == 200
    assert stale.headers["X-Figure-Stale"] == "check"
    assert stale.headers["Cache-Control"] == "no-cache"
    assert await stale.get_data() == await good.get_data()
    assert stale.headers["ETag"] == good.headers["ETag"]
    assert "data version check failed figure=live" in figserve_logs.text
    assert await _metric(live_client, "figserve_figure_stale_total", figure="live") >= 1
    outcome = {"raise": "failed", "hang": "timeout", "nan": "invalid"}[mode]
    assert (
        await _metric(live_client, "figserve_version_checks_total", figure="live", outcome=outcome)
        >= 1
    )
    # A page says so in the image's text, and does not pin what is not current.
    html = await (await live_client.get(f"/gallery/live?{source.query()}")).get_data(as_text=True)
    img = parse(html).images[0]
    assert "data source failed" in img["alt"] and "_v=" not in img["src"]
    # Fixed, it serves the current data again.
    source.mode("ok")
    source.set("red")
    await versions.changed("live")
    fixed = await live_client.get(url)
    assert "X-Figure-Stale" not in fixed.headers
    assert _colour(await fixed.get_data()) == (255, 0, 0)


async def test_a_figure_that_fails_for_new_data_keeps_the_last_good_image(live_client, source):
    url = _url(source, "live_slow")
    good = await live_client.get(url)
    versions = live_client.app.extensions["figserve"].versions
    source.set("fail")
    await versions.changed("live_slow")
    draws = source.draws()
    for _ in range(3):
        stale = await live_client.get(url)
        assert stale.status_code == 200 and stale.headers["X-Figure-Stale"] == "render"
        assert stale.headers["Cache-Control"] == "no-cache"
        assert await stale.get_data() == await good.get_data()
    assert source.draws() == draws + 1  # tried once for this version, not on every request
    # Never drawn before at this size: nothing to show, so a 503 rather than a 500.
    other = await live_client.get(
        f"/figures/live_slow.png?{source.query()}&w=130&h=90",
        headers={"Accept": "application/json"},
    )
    assert other.status_code == 503 and other.headers["Retry-After"]


# -- bounds ----------------------------------------------------------------------------------


async def test_pairs_kept_are_bounded_and_watched_ones_are_never_dropped(tmp_path) -> None:
    app = create_app(
        {"warm_up": False, "version_pairs": 2, "registry": add_live_figures(FIGURES.copy())}
    )
    async with app.test_app():
        client = app.test_client()
        state = app.extensions["figserve"]
        spec = state.registry.get("live_slow")
        sources = [Source(tmp_path / f"s{i}") for i in range(3)]
        for source in sources:  # the least recently used pair makes room for the next
            assert (await client.get(_url(source, "live_slow"))).status_code == 200
        assert len(state.versions._entries) == 2
        watched = [spec.params(**s.params()) for s in sources[1:]]
        for params in watched:
            state.versions.watch(spec, params)
        try:
            # A pair not kept (its images answered from the caches before stay valid within
            # refresh; a new one needs its version kept): no room.
            refused = await client.get(
                _url(sources[0], "live_slow", label="new"), headers={"Accept": "application/json"}
            )
            assert refused.status_code == 503 and refused.headers["Retry-After"]
        finally:
            for params in watched:
                state.versions.unwatch(spec, params)
        assert (await client.get(_url(sources[0], "live_slow", label="new"))).status_code == 200


async def test_pages_read_pins_from_other_threads(live_app: Quart, source) -> None:
    state = live_app.extensions["figserve"]
    spec = state.registry.get("live_slow")
    client = live_app.test_client()
    params = [spec.params(**source.params(label=f"x{i}")) for i in range(20)]
    for p in params[:10]:
        await client.get(_url(source, "live_slow", label=p.label))

    def read_all() -> list[str | None]:
        return [state.versions.pin(spec, p) for p in params]

    seen = await asyncio.gather(*(asyncio.to_thread(read_all) for _ in range(8)))
    for pins in seen:
        assert all(pin is None or re.fullmatch(r"[0-9a-f]{16}", pin) for pin in pins)
    # The pairs a page asked for in vain are learnt for the next page.
    await until(
        lambda: all(state.versions.pin(spec, p) for p in params), "every pin to be known", 20
    )


async def test_pins_pages_hold_are_checked_again_without_requests(live_client, source):
    versions = live_client.app.extensions["figserve"].versions
    pinned = await _pinned(live_client, source)  # refresh: half a second
    generation = versions.generation
    source.set("red")
    # Browsers keep the pinned image and never ask: the pin a page showed is checked when it
    # expires, and the new version makes page caches (keyed on the generation) draw again.
    await until(lambda: versions.generation > generation, "the generation to grow", 10)
    html = await (await live_client.get(f"/gallery/live?{source.query()}&{SIZE}")).get_data(
        as_text=True
    )
    assert _pin(parse(html).images[0]["src"]) != _pin(pinned)


async def test_a_cached_page_does_not_keep_a_pin_nobody_checks(live_client, source):
    versions = live_client.app.extensions["figserve"].versions
    await _pinned(live_client, source)
    generation = versions.generation
    checks = source.checks()
    # No change, no request, no page drawn again: after one more check the pin is no longer
    # checked, so the generation grows once and a cached page is drawn again (and pins anew).
    await until(lambda: versions.generation > generation, "the generation to grow", 10)
    assert source.checks() == checks + 1


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pin=st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True))
async def test_any_pin_is_an_image_or_a_400(live_client, pin: str) -> None:
    resp = await live_client.get(
        "/figures/waves.png", query_string={"w": "60", "h": "50", "_v": pin}
    )
    well_formed = re.fullmatch(r"[A-Za-z0-9_-]{1,64}", pin) is not None
    assert resp.status_code == (200 if well_formed else 400), pin
    if well_formed:
        assert resp.headers["Cache-Control"] in ("no-cache", IMMUTABLE)
