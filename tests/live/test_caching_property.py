"""Property: whatever the data does, no response whose bytes can change says ``immutable``.

Generated sequences of data changes, failing sources, failing figures and requests (plain URLs,
URLs pinned by the pages, pins seen earlier, conditional requests with any tag seen earlier)
against one worker. Every answer must keep the promises of HTTP caching:

- all ``immutable`` answers of one URL, ever, carry the same bytes (a browser keeps the first);
- one strong ETag always names the same bytes;
- a plain URL is never ``immutable``, and nothing is ever a 5xx other than a 503;
- a 304 answers only a tag that names the bytes the URL would give now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.html import parse
from tests.support.livedata import Source

pytestmark = pytest.mark.property

IMMUTABLE = "public, max-age=31536000, immutable"
COLOURS = ["red", "green", "blue"]
FIGURES = ["live_slow", "live"]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.sampled_from([*COLOURS, "fail"])),
        st.tuples(st.just("mode"), st.sampled_from(["ok", "ok", "raise", "nan"])),
        st.tuples(st.just("changed"), st.sampled_from(FIGURES)),
        st.tuples(st.just("plain"), st.sampled_from(FIGURES)),
        st.tuples(st.just("page"), st.sampled_from(FIGURES)),
        st.tuples(st.just("old pin"), st.integers(0, 50)),
        st.tuples(st.just("conditional"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=12,
)


class Ledger:
    """What the clients saw, over every example."""

    def __init__(self) -> None:
        self.immutable: dict[str, bytes] = {}  # URL -> the bytes it said were immutable
        self.tags: dict[str, bytes] = {}  # ETag -> bytes
        self.urls: list[str] = []  # URLs requested (pinned ones among them)
        self.seen: list[tuple[str, str]] = []  # (URL, ETag) of 200s

    async def fetch(self, client: Any, url: str, etag: str | None = None) -> None:
        headers = {"If-None-Match": etag} if etag else {}
        resp = await client.get(url, headers=headers)
        status, control = resp.status_code, resp.headers.get("Cache-Control", "")
        assert status in (200, 304, 503), (url, status)
        if status == 503:
            assert resp.headers["Retry-After"] and control == "no-store"
            return
        tag = resp.headers["ETag"]
        if "_v=" not in url:
            assert control != IMMUTABLE, url
        if status == 304:
            # The client's copy is what the URL gives now: the tag it sent is this one.
            assert etag == tag and tag in self.tags, (url, etag, tag)
            return
        data = await resp.get_data()
        assert self.tags.setdefault(tag, data) == data, f"ETag {tag} names two images"
        if control == IMMUTABLE:
            kept = self.immutable.setdefault(url, data)
            assert kept == data, f"{url} said immutable for two images"
        else:
            assert control == "no-cache", control
        self.urls.append(url)
        self.seen.append((url, tag))


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def shared_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return Source(Path(tmp_path_factory.mktemp("property")) / "source", "red")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
async def test_no_response_whose_bytes_can_change_says_immutable(
    live_client, shared_source: Source, ledger: Ledger, steps: list[tuple[str, Any]]
) -> None:
    source = shared_source
    versions = live_client.app.extensions["figserve"].versions
    size = "w=60&h=50"
    for kind, arg in steps:
        if kind == "set":
            source.set(arg)
        elif kind == "mode":
            source.mode(arg)
        elif kind == "changed":
            await versions.changed(arg)
        elif kind == "plain":
            await ledger.fetch(live_client, f"/figures/{arg}.png?{source.query()}&{size}")
        elif kind == "page":
            resp = await live_client.get(f"/gallery/{arg}?{source.query()}&{size}")
            assert resp.status_code == 200
            img = parse(await resp.get_data(as_text=True)).images[0]
            await ledger.fetch(live_client, img["src"])
        elif kind == "old pin" and ledger.urls:
            await ledger.fetch(live_client, ledger.urls[arg % len(ledger.urls)])
        elif kind == "conditional" and ledger.seen:
            url, tag = ledger.seen[arg % len(ledger.seen)]
            await ledger.fetch(live_client, url, tag)
    source.mode("ok")
