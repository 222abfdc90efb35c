"""User pages run bounded: checked at start, sandboxed, limited in steps, time and size, cached
while their templates stay the same, and never a 500 of figserve's own."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from quart import Quart

from figserve.app import create_app
from figserve.web.userpages import PagesFolderError
from tests.support.usercode import UserFolder
from tests.web.test_errors import BROWSER_PAGE_ACCEPT

TIMEOUT = 1.0
HTML = {"Accept": BROWSER_PAGE_ACCEPT}


def pages_app(folder: Path, **settings: object) -> Quart:
    config = {"warm_up": False, "pages": str(folder), "page_timeout": TIMEOUT, **settings}
    return create_app(config)


@pytest.fixture
async def served(user_folder: UserFolder) -> AsyncIterator[tuple[Quart, UserFolder]]:
    user_folder.write("pages/hello.html", "Hello {{ request.args.get('who', 'you') }}")
    app = pages_app(user_folder.root / "pages")
    async with app.test_app():
        yield app, user_folder


def touch(path: Path) -> None:
    """A change the cache must see even within one clock tick."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


# -- at start ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "source", "message"),
    [
        ("bad.html", "line one\n{% for x in %}", "bad.html, line 2: "),
        ("_part.html", "{{ unclosed", "_part.html, line 1: "),
        ("sub/deep.html", "\n\n{% endblock %}", "sub/deep.html, line 3: "),
        ("big.html", "x" * (1 << 20) + "y", "characters; a page template may have at most"),
    ],
)
def test_a_template_that_does_not_compile_stops_the_start(
    user_folder: UserFolder, relative: str, source: str, message: str
) -> None:
    user_folder.write("pages/fine.html", "fine")
    (user_folder.root / "pages" / relative).parent.mkdir(parents=True, exist_ok=True)
    (user_folder.root / "pages" / relative).write_text(source)
    with pytest.raises(PagesFolderError) as caught:
        pages_app(user_folder.root / "pages")
    assert str(caught.value).startswith("FIGSERVE_PAGES: ")
    assert message in str(caught.value)


# -- links -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "served_"),
    [
        ("_part.html", False),
        ("sub/_x.html", False),
        ("_private/page.html", False),
        (".hidden.html", False),
        ("notes.txt", False),
        ("sub/ok.html", True),
    ],
)
async def test_a_link_is_served_only_if_its_target_could_be(
    user_folder: UserFolder, target: str, served_: bool
) -> None:
    user_folder.write(f"pages/{target}", "TARGET")
    os.symlink(user_folder.root / "pages" / target, user_folder.root / "pages" / "alias.html")
    app = pages_app(user_folder.root / "pages")
    async with app.test_app():
        resp = await app.test_client().get("/pages/alias", headers=HTML)
        body = await resp.get_data(as_text=True)
    assert (resp.status_code == 200) == served_
    assert ("TARGET" in body) == served_


# -- literals Jinja itself would fail on ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("{{ 1e400 }} {{ -1e400 }} {{ 1e400 - 1e400 }}", "inf -inf nan"),
        ("{{ [1e400, 1]|max }} {{ (1e400, 2)|min }}", "inf 2"),
        ('{{ {"a": 1e400}|tojson }}', '{"a": Infinity}'),
        ("{% macro m(a=-1e400) %}{{ a }}{% endmacro %}{{ m() }}", "-inf"),
        ("{{ 1e400|int }} {{ (1e400 - 1e400)|int(7) }}", "0 7"),
        ("{% if 3 < 1e400 %}less{% endif %}", "less"),
        ("{{ 10**400 > 1e308 }}", "True"),
    ],
)
async def test_non_finite_literals_render(user_folder: UserFolder, source: str, shown: str) -> None:
    user_folder.write("pages/lit.html", source)
    app = pages_app(user_folder.root / "pages")
    async with app.test_app():
        resp = await app.test_client().get("/pages/lit", headers=HTML)
        assert (resp.status_code, await resp.get_data(as_text=True)) == (200, shown)


# -- bounds -----------------------------------------------------------------------------------

HEAVY = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}",
    "string times n": "{{ 'x' * 10**9 }}",
    "center": "{{ 'x'|center(1000000000) }}",
    "center method": "{{ 'x'.center(1000000000) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "format filter width": "{{ '%0999999999d'|format(1) }}",
    "format method width": "{{ '{:>999999999}'.format(1) }}",
    "doubling concat": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "doubling plus": "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "doubling block set": "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}"
    "{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}",
    "big power": "{{ 2**100000000 }}",
    "squaring": "{% set ns = namespace(x=3) %}{% for i in range(64) %}"
    "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}",
    "replace": "{{ ('x'*100000)|replace('x', 'x'*100000) }}",
    "join": "{% set l = ['x'*100000]*1000 %}{{ l|join }}",
    "batch": "{{ [1]|batch(1000000000, 0)|list|length }}",
    "long output": "{% for i in range(100000) %}" + "y" * 1000 + "{% endfor %}",
    "lipsum": "{{ lipsum(100000) }}",
    "to_bytes": "{{ (1).to_bytes(1000000000, 'big') }}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
    "{% endmacro %}{{ f(40) }}",
    "recursive loop": "{% for x in range(100) recursive %}"
    "{{ loop(range(100)) if loop.depth < 5 }}{% endfor %}",
}


@pytest.mark.parametrize("name", list(HEAVY))
async def test_a_heavy_page_is_stopped_by_its_bounds(user_folder: UserFolder, name: str) -> None:
    user_folder.write("pages/heavy.html", HEAVY[name])
    app = pages_app(user_folder.root / "pages")
    async with app.test_app():
        started = time.monotonic()
        resp = await app.test_client().get("/pages/heavy", headers=HTML)
        took = time.monotonic() - started
        body = await resp.get_data(as_text=True)
    assert resp.status_code in {422, 503}, body[:300]
    assert ("Page too complex" if resp.status_code == 422 else "Page took too long") in body
    assert took < TIMEOUT + 2, took  # stopped at its deadline, whatever it asked for


async def test_a_page_that_raises_names_its_template_and_line(served, figserve_logs) -> None:
    app, folder = served
    folder.write("pages/_part.html", "one\n{{ 1 // 0 }}")
    folder.write("pages/broken.html", "{% include '_part.html' %}")
    client = app.test_client()
    for _ in range(3):
        resp = await client.get("/pages/broken", headers=HTML)
        assert resp.status_code == 500
        body = await resp.get_data(as_text=True)
        assert "Page failed" in body and "_part.html, line 2: ZeroDivisionError" in body
    logged = [r for r in figserve_logs.records if "Page failed" in r.getMessage()]
    assert len(logged) == 1  # once per build, not once per request
    assert app.extensions["figserve"].pages.builds == 1


async def test_pages_see_only_what_their_key_holds(served) -> None:
    app, folder = served
    folder.write(
        "pages/nosy.html",
        "[{{ config }}][{{ session }}][{{ g }}][{{ request.headers }}][{{ request.cookies }}]",
    )
    resp = await app.test_client().get("/pages/nosy", headers={**HTML, "Cookie": "owner=secret"})
    assert await resp.get_data(as_text=True) == "[][][][][]"


# -- the cache --------------------------------------------------------------------------------


async def test_a_page_is_built_once_until_what_it_reads_changes(served) -> None:
    app, folder = served
    state = app.extensions["figserve"]
    client = app.test_client()
    layout = folder.write("pages/_layout.html", "<main>{% block body %}{% endblock %}</main>")
    page = folder.write(
        "pages/cached.html",
        "{% extends '_layout.html' %}{% block body %}one {{ request.args.x }}{% endblock %}",
    )

    async def get(path: str) -> str:
        resp = await client.get(path, headers=HTML)
        assert resp.status_code == 200
        return await resp.get_data(as_text=True)

    assert await get("/pages/cached") == "<main>one </main>"
    assert await get("/pages/cached") == "<main>one </main>"
    assert state.pages.builds == 1
    assert await get("/pages/cached?x=2") == "<main>one 2</main>"  # the query is in the key
    assert state.pages.builds == 2

    page.write_text(page.read_text().replace("one", "two"))
    touch(page)
    assert await get("/pages/cached") == "<main>two </main>"
    layout.write_text("<div>{% block body %}{% endblock %}</div>")
    touch(layout)
    assert await get("/pages/cached") == "<div>two </div>"  # a template it extends changed
    assert state.pages.builds == 4

    state.versions = SimpleNamespace(generation=7)  # a figure's data changed
    assert await get("/pages/cached") == "<div>two </div>"
    assert state.pages.builds == 5


async def test_cached_pages_revalidate_in_each_coding(served) -> None:
    app, folder = served
    folder.write("pages/long.html", "<p>{{ 'word ' * 400 }}</p>")
    client = app.test_client()
    tags = {}
    for coding in ("br", "gzip", "identity"):
        first = await client.get("/pages/long", headers={"Accept-Encoding": coding})
        assert first.headers.get("Content-Encoding") == (None if coding == "identity" else coding)
        tags[coding] = first.headers["ETag"]
        again = await client.get(
            "/pages/long", headers={"Accept-Encoding": coding, "If-None-Match": tags[coding]}
        )
        assert again.status_code == 304 and again.headers["ETag"] == tags[coding]
    assert len(set(tags.values())) == 3
    assert app.extensions["figserve"].pages.builds == 1


@pytest.mark.parametrize("path", ["/", "/gallery/waves?components=3", "/normal/5_3", "/docs"])
async def test_figserves_own_pages_are_built_once(app: Quart, path: str) -> None:
    client = app.test_client()
    bodies = {await (await client.get(path)).get_data() for _ in range(5)}
    assert len(bodies) == 1
    pages = app.extensions["figserve"].pages
    assert pages.builds == 1
    app.extensions["figserve"].versions = SimpleNamespace(generation=1)
    await client.get(path)
    assert pages.builds == 2


async def test_the_gallery_keys_on_its_query(app: Quart) -> None:
    client = app.test_client()
    good = await client.get("/gallery/waves?components=3")
    bad = await client.get("/gallery/waves?components=99")
    assert (good.status_code, bad.status_code) == (200, 400)
    assert (await client.get("/gallery/waves?components=99")).status_code == 400
    assert app.extensions["figserve"].pages.builds == 2


@pytest.mark.parametrize("app_config", [{"warm_up": False, "page_cache_bytes": 0}])
async def test_a_cache_of_zero_bytes_builds_every_time(app: Quart) -> None:
    client = app.test_client()
    for _ in range(3):
        assert (await client.get("/")).status_code == 200
    assert app.extensions["figserve"].pages.builds == 3


async def test_builds_that_waited_their_timeout_behind_others_are_refused(
    user_folder: UserFolder,
) -> None:
    user_folder.write("pages/slow.html", HEAVY["exponential macro"])  # runs to its deadline
    app = pages_app(user_folder.root / "pages", page_timeout=0.3)
    async with app.test_app():
        client = app.test_client()
        started = time.monotonic()
        replies = await asyncio.gather(
            *(client.get(f"/pages/slow?n={n}", headers=HTML) for n in range(8))
        )
        took = time.monotonic() - started
    titles = [
        "Page took too long" if b"Page took too long" in await r.get_data() else "busy"
        for r in replies
    ]
    assert {r.status_code for r in replies} == {503}
    assert "busy" in titles  # not built at all: they would have started too late
    assert took < 8 * 0.3, took  # nobody waited for all the builds before theirs
