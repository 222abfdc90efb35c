"""Job routes: private jobs (owner cookie, admin token), the report form's bounds, and the
limits checked at submission (per client, disk budget, estimated work).

Jobs here never run (``job_threads`` is 0), so they stay queued exactly as created; finished
jobs are written into the store directly, with their result file.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import string
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart

import figserve.web.forms as forms_module
from figserve.app import create_app
from figserve.figures import FIGURES
from figserve.jobs import Admission, JobRecord, JobState, new_job_id
from figserve.render import ImageOptions, canvas_for
from figserve.web.owner import COOKIE, issued, new_token, token_hash
from tests.jobs.conftest import runner_of, store_of, token_for

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ADMIN = "operator-token-0123456789"
WAVES = {"items": [{"figure": "waves", "format": "svg"}], "output": "zip"}
URLSAFE = string.ascii_letters + string.digits + "-_"


@pytest.fixture
def app_config(jobs_dir: Path) -> dict:
    return {
        "warm_up": False,
        "jobs_dir": str(jobs_dir),
        "job_threads": 0,  # nothing runs: jobs stay as they were created
        "job_max_active": 1000,
        "job_max_client_active": 1000,
        "job_max_pixels": 20_000_000,
        "job_results_quota_bytes": 10**15,
    }


def with_cookie(app: Quart, token: str | None) -> object:
    client = app.test_client()
    if token is not None:
        client.set_cookie("localhost", COOKIE, token, path="/jobs")
    return client


def owner_cookie(resp) -> dict[str, str]:
    """The Set-Cookie of the owner cookie, as attribute -> value (lower-case names)."""
    (header,) = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "=")]
    name_value, *attrs = [part.strip() for part in header.split(";")]
    out = {"value": name_value.split("=", 1)[1]}
    for attr in attrs:
        key, _, value = attr.partition("=")
        out[key.lower()] = value
    return out


def store_done(app: Quart, owner: str | None, data: bytes = b"%PDF-1.4 result") -> str:
    """A finished job of ``owner`` (a token hash), with its result on disk."""
    job_id = new_job_id()
    now = time.time()
    record = JobRecord(
        id=job_id,
        state=JobState.DONE,
        output="pdf",
        total=1,
        done=1,
        created=now,
        started=now,
        finished=now,
        expires=now + 3600,
        result_bytes=len(data),
        client=owner,
        bucket=owner,
    )
    store = store_of(app)
    store.db.create(record, [], Admission(10**6))
    store.result_path(record).write_bytes(data)
    return job_id


# --- the owner cookie ----------------------------------------------------------------------------


async def test_a_submission_sets_a_private_owner_cookie(app):
    client = app.test_client()
    resp = await client.post("/jobs", json=WAVES)
    assert resp.status_code == 202
    cookie = owner_cookie(resp)
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{32}", cookie["value"])
    assert issued(cookie["value"], runner_of(app).owner_key)
    assert cookie["path"] == "/jobs"
    assert cookie["max-age"] == str(7 * 86400)
    assert cookie["samesite"] == "Lax"
    assert "httponly" in cookie
    assert "secure" not in cookie  # plain http: a Secure cookie would never come back

    # Kept and sent back, it is renewed, not replaced; the form answers with it too.
    again = await client.post("/jobs", json=WAVES)
    assert owner_cookie(again)["value"] == cookie["value"]
    form = urlencode([("figure", "waves"), ("output", "zip"), ("format", "svg")])
    resp = await client.post("/jobs", data=form, headers=FORM)
    assert resp.status_code == 303
    assert owner_cookie(resp)["value"] == cookie["value"]


async def test_over_https_the_owner_cookie_is_secure(app):
    resp = await app.test_client().post("/jobs", json=WAVES, scheme="https")
    assert "secure" in owner_cookie(resp)


FORGED = [
    "",
    "short",
    "x" * 43,  # the shape of tokens of earlier releases: no longer issued
    "é" * 43,
    "a" * 24 + "." + "b" * 32,  # the shape of an issued token, not signed
    new_token(b"another server's key 0123456789ab"),
]


@pytest.mark.parametrize("bad", FORGED, ids=range(len(FORGED)))  # ids stable across workers
async def test_a_cookie_the_server_did_not_issue_counts_as_none(app, bad):
    resp = await with_cookie(app, bad).post("/jobs", json=WAVES)
    assert resp.status_code == 202
    assert owner_cookie(resp)["value"] != bad
    # It opens nobody's job, not even one made under it.
    job_id = store_done(app, token_hash(bad) if bad else None)
    assert (await with_cookie(app, bad).get(f"/jobs/{job_id}")).status_code == 404


@FAST
@given(
    nonce=st.text(alphabet=st.sampled_from(URLSAFE), min_size=24, max_size=24),
    mac=st.text(alphabet=st.sampled_from(URLSAFE), min_size=32, max_size=32),
)
def test_no_made_up_token_is_taken_for_an_issued_one(nonce, mac):
    key = b"k" * 32
    assert not issued(f"{nonce}.{mac}", key)
    assert issued(new_token(key), key)


async def test_cookies_made_up_per_request_do_not_pass_the_per_client_limit(app_config):
    application = create_app({**app_config, "job_max_client_active": 2})
    async with application.test_app():
        statuses = []
        for i in range(6):
            # A new made-up cookie each time, of the issued shape, even signed by a wrong key.
            forged = new_token(f"{i:032d}".encode()) if i % 2 else "a" * 24 + f".{i:032d}"
            statuses.append(
                (await with_cookie(application, forged).post("/jobs", json=WAVES)).status_code
            )
        assert statuses == [202, 202, 429, 429, 429, 429]
        # A cookie the server issued still gets its own share.
        assert (
            await with_cookie(application, token_for(application)).post("/jobs", json=WAVES)
        ).status_code == 202


async def test_the_store_keeps_only_a_hash_of_the_token(app, jobs_dir):
    resp = await app.test_client().post("/jobs", json=WAVES)
    token = owner_cookie(resp)["value"]
    job_id = (await resp.get_json())["id"]
    with sqlite3.connect(jobs_dir / "jobs.sqlite3") as db:
        (client,) = db.execute("SELECT client FROM jobs WHERE id = ?", (job_id,)).fetchone()
        dump = "\n".join(db.iterdump())
    assert client == token_hash(token)
    assert token not in dump


# --- privacy -------------------------------------------------------------------------------------


def without_id(text: str, job_id: str) -> str:
    return text.replace(job_id, "<id>").replace(job_id[:8], "<id8>")


async def answer(client, method: str, path: str, accept: str) -> tuple[int, dict, str]:
    resp = await client.open(path, method=method, headers={"Accept": accept})
    headers = {k.lower(): v for k, v in resp.headers.items() if k.lower() not in {"date"}}
    return resp.status_code, headers, await resp.get_data(as_text=True)


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
async def test_someone_elses_job_answers_exactly_as_an_unknown_one(app, accept):
    mine = token_for(app)
    job_id = store_done(app, token_hash(mine))
    unknown = new_job_id()
    for stranger in (None, token_for(app)):
        client = with_cookie(app, stranger)
        for method, suffix in [("GET", ""), ("GET", "/result"), ("DELETE", "")]:
            theirs = await answer(client, method, f"/jobs/{job_id}{suffix}", accept)
            nobodys = await answer(client, method, f"/jobs/{unknown}{suffix}", accept)
            assert theirs[0] == 404
            assert theirs[1] == nobodys[1]
            assert without_id(theirs[2], job_id) == without_id(nobodys[2], unknown)
        listing = await client.get("/jobs")
        assert (await listing.get_json())["jobs"] == []
    # The owner still has it, whole: the strangers' DELETE did nothing.
    owner = with_cookie(app, mine)
    assert (await owner.get(f"/jobs/{job_id}/result")).status_code == 200
    assert [j["id"] for j in (await (await owner.get("/jobs")).get_json())["jobs"]] == [job_id]


@FAST
@given(owners=st.lists(st.integers(0, 3), min_size=1, max_size=8), viewer=st.integers(-1, 3))
async def test_each_client_sees_and_acts_on_its_own_jobs_only(app, owners, viewer):
    tokens = [token_for(app) for _ in range(4)]
    jobs = [(store_done(app, token_hash(tokens[o])), o) for o in owners]
    client = with_cookie(app, tokens[viewer] if viewer >= 0 else None)
    listed = {j["id"] for j in (await (await client.get("/jobs")).get_json())["jobs"]}
    assert listed == {job_id for job_id, o in jobs if o == viewer}
    for job_id, o in jobs:
        expected = 200 if o == viewer else 404
        assert (await client.get(f"/jobs/{job_id}")).status_code == expected
        assert (await client.get(f"/jobs/{job_id}/result")).status_code == expected
    for job_id, o in jobs:
        expected = 204 if o == viewer else 404
        assert (await client.delete(f"/jobs/{job_id}")).status_code == expected
    for job_id, o in jobs:  # the others' jobs are all still there
        if o != viewer:
            assert await runner_of(app).get(job_id) is not None


async def test_jobs_of_a_previous_version_without_an_owner_are_nobodys(app):
    job_id = store_done(app, None)
    for cookie in (None, token_for(app)):
        assert (await with_cookie(app, cookie).get(f"/jobs/{job_id}")).status_code == 404


# --- the operator's view -------------------------------------------------------------------------


@pytest.fixture
def admin_app_config(app_config: dict) -> dict:
    return {**app_config, "admin_token": ADMIN}


async def test_the_admin_token_shows_every_clients_jobs(admin_app_config):
    application = create_app(admin_app_config)
    async with application.test_app():
        ids = [store_done(application, token_hash(token_for(application))) for _ in range(3)]
        admin = application.test_client()
        bearer = {"Authorization": f"Bearer {ADMIN}"}
        listed = [
            j["id"] for j in (await (await admin.get("/jobs", headers=bearer)).get_json())["jobs"]
        ]
        assert sorted(listed) == sorted(ids)
        assert (await admin.get(f"/jobs/{ids[0]}/result", headers=bearer)).status_code == 200
        assert (await admin.delete(f"/jobs/{ids[0]}", headers=bearer)).status_code == 204
        # A wrong bearer token is refused, not quietly taken for an ordinary client.
        for header in (f"Bearer {ADMIN}x", f"Bearer {ADMIN[:-1]}", "Bearer", "bearer  x"):
            resp = await admin.get("/jobs", headers={"Authorization": header})
            assert resp.status_code == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        # Other kinds of credentials (a proxy's basic auth) are not the operator's at all.
        user = with_cookie(application, token_for(application))
        for header in (f"Basic {ADMIN}", "Basic dXNlcjpwYXNz", "Digest x", "Negotiate"):
            resp = await user.post("/jobs", json=WAVES, headers={"Authorization": header})
            assert resp.status_code == 202, header
            mine = (await resp.get_json())["id"]
            listed = await user.get("/jobs", headers={"Authorization": header})
            assert (await listed.get_json())["jobs"][0]["id"] == mine
            assert (
                await user.get(f"/jobs/{ids[1]}", headers={"Authorization": header})
            ).status_code == 404
        # Never in a URL.
        assert (await admin.get(f"/jobs?token={ADMIN}")).status_code == 400
        assert (await (await admin.get("/jobs")).get_json())["jobs"] == []


async def test_without_an_admin_token_configured_there_is_no_operator_view(app):
    job_id = store_done(app, token_hash(token_for(app)))
    client = app.test_client()
    for header in ("Bearer ", "Bearer anything-at-all-0123456789"):
        resp = await client.get("/jobs", headers={"Authorization": header})
        assert (await resp.get_json())["jobs"] == []
        resp = await client.get(f"/jobs/{job_id}", headers={"Authorization": header})
        assert resp.status_code == 404


def test_a_short_admin_token_is_refused_at_start():
    with pytest.raises(ValueError, match="FIGSERVE_ADMIN_TOKEN"):
        create_app({"admin_token": "short"})


# --- nothing names a host or a process; nothing is cached ----------------------------------------


async def test_no_job_response_names_the_worker(app):
    client = app.test_client()
    created = await client.post("/jobs", json=WAVES)
    job_id = (await created.get_json())["id"]
    done = store_done(app, token_hash(owner_cookie(created)["value"]))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    responses = [
        created,
        await client.get("/jobs"),
        await client.get("/jobs", headers={"Accept": "text/html"}),
        await client.get(f"/jobs/{job_id}"),
        await client.get(f"/jobs/{job_id}", headers={"Accept": "text/html"}),
        await client.get(f"/jobs/{done}/result"),
        await client.delete(f"/jobs/{job_id}"),
    ]
    for resp in responses:
        assert "X-Figserve-Worker" not in resp.headers
        text = (await resp.get_data()).decode("latin-1") + str(resp.headers)
        assert worker not in text
        if resp.mimetype == "application/json":
            body = await resp.get_json()
            for job in body.get("jobs", [body]):
                assert "worker" not in job


async def test_no_job_response_may_be_cached(app):
    client = app.test_client()
    created = await client.post("/jobs", json=WAVES)
    job_id = (await created.get_json())["id"]
    done = store_done(app, token_hash(owner_cookie(created)["value"]))
    form = urlencode([("figure", "waves"), ("output", "zip"), ("format", "svg")])
    responses = [
        created,
        await client.post("/jobs", data=form, headers=FORM),
        await client.get("/jobs"),
        await client.get(f"/jobs/{job_id}"),
        await client.get(f"/jobs/{done}/result"),
        await client.get(f"/jobs/{new_job_id()}"),
        await client.delete(f"/jobs/{done}"),
    ]
    for resp in responses:
        assert resp.headers["Cache-Control"] == "no-store", resp.status_code
        assert "Expires" not in resp.headers


# --- the report form: bounded before any work ----------------------------------------------------


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every figure the report form validates (the real validation runs)."""
    seen: list[str] = []
    real = forms_module.parse_flat

    def counted(model, values, **kwargs):
        seen.append(kwargs.get("prefix", "").rstrip("."))
        return real(model, values, **kwargs)

    monkeypatch.setattr(forms_module, "parse_flat", counted)
    yield seen


def stored_items(app: Quart) -> int:
    db = store_of(app).db
    return sum(len(db.items(job.id)) for job in db.recent(10**6))


async def test_a_figure_ticked_many_times_does_not_multiply_items(app, checks):
    # The attack: a 1.3 KB body, one figure ticked a hundred times, 500 copies of it.
    form = [("figure", "waves")] * 100 + [("copies.waves", "500"), ("output", "zip")]
    body = urlencode(form)
    assert len(body) < 1500
    resp = await app.test_client().post("/jobs", data=body, headers=FORM)
    assert resp.status_code == 400
    problem = await resp.get_json()
    assert problem["param"] == "figure"
    assert "more than once" in problem["detail"]
    assert checks == []
    assert stored_items(app) == 0


async def test_too_many_copies_are_refused_before_any_figure_is_checked(app, checks):
    names = [spec.name for spec in app.extensions["figserve"].registry]
    form = [("figure", n) for n in names] + [(f"copies.{n}", "200") for n in names]
    resp = await app.test_client().post("/jobs", data=urlencode(form), headers=FORM)
    assert resp.status_code == 400
    problem = await resp.get_json()
    assert problem["param"] == "copies"
    assert f"got {200 * len(names)}" in problem["detail"]
    assert checks == []
    assert stored_items(app) == 0


async def test_copies_are_validated_once_per_figure(app, checks):
    form = [("figure", "histogram"), ("copies.histogram", "500"), ("histogram.seed", "7")]
    form += [("output", "zip"), ("format", "svg"), ("w", "50"), ("h", "50")]
    resp = await app.test_client().post("/jobs", data=urlencode(form), headers=FORM)
    assert resp.status_code == 303
    assert checks == ["histogram"]
    job_id = resp.headers["Location"].rsplit("/", 1)[1]
    items = store_of(app).db.items(job_id)
    assert [i["params"]["seed"] for i in items] == list(range(7, 507))


async def test_seeds_of_copies_stay_within_the_figures_bounds(app):
    form = [("figure", "histogram"), ("copies.histogram", "3"), ("histogram.seed", "4294967294")]
    resp = await app.test_client().post("/jobs", data=urlencode(form), headers=FORM)
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "histogram.seed"


copies_text = st.one_of(
    st.integers(-5, 700).map(str),
    st.sampled_from(["", " 3", "3.0", "1e2", "²", "٣", "0x10", "9" * 30]),
    st.text(max_size=4),
)


@FAST
@given(
    ticked=st.lists(st.sampled_from(["waves", "histogram", "heatmap", "pie", ""]), max_size=6),
    copies=st.dictionaries(st.sampled_from(["waves", "histogram", "heatmap"]), copies_text),
    output=st.sampled_from(["pdf", "zip", "tar", ""]),
)
async def test_any_report_form_is_bounded_before_it_is_expanded(app, ticked, copies, output):
    seen: list[str] = []
    real = forms_module.parse_flat

    def counted(model, values, **kwargs):
        seen.append(kwargs.get("prefix", "").rstrip("."))
        return real(model, values, **kwargs)

    forms_module.parse_flat = counted
    try:
        form = [("figure", name) for name in ticked]
        form += [(f"copies.{n}", c) for n, c in copies.items()]
        form += [("output", output), ("format", "svg"), ("w", "50"), ("h", "50")]
        before = stored_items(app)
        resp = await app.test_client().post("/jobs", data=urlencode(form), headers=FORM)
    finally:
        forms_module.parse_flat = real
    assert resp.status_code in {303, 400}
    assert len(seen) <= len(set(ticked))  # once per figure at most, never per copy
    added = stored_items(app) - before
    limit = app.extensions["figserve"].settings.job_max_items
    if resp.status_code == 303:
        wanted = sum(int(copies.get(n) or 1) for n in ticked)
        assert added == wanted <= limit
    else:
        assert added == 0


# --- limits at submission ------------------------------------------------------------------------


async def test_each_client_has_a_share_of_the_active_jobs(app_config):
    application = create_app({**app_config, "job_max_client_active": 2})
    async with application.test_app():
        # Clients that keep no cookie share one share per address.
        statuses = [
            (await application.test_client().post("/jobs", json=WAVES)).status_code
            for _ in range(3)
        ]
        assert statuses == [202, 202, 429]
        me = with_cookie(application, token_for(application))
        for _ in range(2):
            assert (await me.post("/jobs", json=WAVES)).status_code == 202
        resp = await me.post("/jobs", json=WAVES)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"]
        assert "limit per client is 2" in (await resp.get_json())["detail"]
        # Another client still gets in.
        other = with_cookie(application, token_for(application))
        assert (await other.post("/jobs", json=WAVES)).status_code == 202
        # A job that ends frees its place.
        first = (await (await me.get("/jobs")).get_json())["jobs"][-1]["id"]
        assert (await me.delete(f"/jobs/{first}")).status_code == 200
        assert (await me.post("/jobs", json=WAVES)).status_code == 202


async def test_results_quota_counts_results_and_what_active_jobs_may_write(app_config):
    config = {
        **app_config,
        "job_results_quota_bytes": 1_000_000,
        "job_max_output_bytes": 200_000,
    }
    application = create_app(config)
    async with application.test_app():
        client = application.test_client()
        store_done(application, None, b"x" * 500_000)
        # 500,000 stored + 200,000 for each job that may still write: room for two.
        assert (await client.post("/jobs", json=WAVES)).status_code == 202
        assert (await client.post("/jobs", json=WAVES)).status_code == 202
        resp = await client.post("/jobs", json=WAVES)
        assert resp.status_code == 503
        assert 1 <= int(resp.headers["Retry-After"]) <= 3600
        assert "disk budget" in (await resp.get_json())["detail"]
        # When a result goes, room comes back.
        runner = runner_of(application)
        for job in await runner.recent(10, None):
            if job.state is JobState.DONE:
                await runner.remove(job.id)
        assert (await client.post("/jobs", json=WAVES)).status_code == 202


async def test_the_estimated_work_of_a_job_is_bounded_at_submission(app_config):
    application = create_app({**app_config, "job_max_pixels": 1_000_000})
    async with application.test_app():
        client = application.test_client()
        items = [{"figure": "waves", "w": 500, "h": 500, "format": "png"}] * 5  # 1.25 M px
        resp = await client.post("/jobs", json={"items": items, "output": "zip"})
        assert resp.status_code == 400
        problem = await resp.get_json()
        assert problem["param"] == "items"
        assert "1,000,000 pixels" in problem["detail"] and "1,250,000" in problem["detail"]
        form = [("figure", "waves"), ("copies.waves", "5"), ("w", "500"), ("h", "500")]
        form += [("output", "zip"), ("format", "png")]
        resp = await client.post("/jobs", data=urlencode(form), headers=FORM)
        assert resp.status_code == 400
        assert "1,000,000 pixels" in (await resp.get_json())["detail"]
        # Four fit.
        resp = await client.post("/jobs", json={"items": items[:4], "output": "zip"})
        assert resp.status_code == 202


@FAST
@given(
    sizes=st.lists(st.tuples(st.integers(50, 3000), st.integers(50, 3000)), min_size=1, max_size=6)
)
async def test_a_job_is_accepted_exactly_when_its_pixels_fit_the_budget(app, sizes):
    budget = app.extensions["figserve"].settings.job_max_pixels
    items = [{"figure": "waves", "w": w, "h": h, "format": "svg"} for w, h in sizes]
    # An item past the per-image limit counts as drawn: at the density that fits the limit.
    largest = app.extensions["figserve"].settings.max_pixels
    pixels = sum(canvas_for(ImageOptions(w=w, h=h), largest).pixels for w, h in sizes)
    resp = await app.test_client().post("/jobs", json={"items": items, "output": "zip"})
    assert resp.status_code == (202 if pixels <= budget else 400), json.dumps(sizes)


@pytest.mark.parametrize("path", ["/jobs/{id}", "/jobs/{id}/result", "/jobs/nope", "/jobs/a.b"])
async def test_unknown_and_malformed_ids_are_404(client, path):
    resp = await client.get(path.format(id=new_job_id()))
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"
    assert (await client.delete(path.format(id=new_job_id()))).status_code in {404, 405}


class FormState(HTMLParser):
    """The controls of a page's report form: what each says, and the errors shown."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.ticked: list[str] = []
        self.invalid: list[str] = []
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "checkbox":
            if "checked" in a:
                self.ticked.append(a["value"])
        elif tag == "input" and "name" in a:
            self.values[a["name"]] = a.get("value") or ""
            if a.get("aria-invalid") == "true":
                self.invalid.append(a["name"])
        elif tag == "select":
            self._select = a["name"]
            if a.get("aria-invalid") == "true":
                self.invalid.append(a["name"])
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a["value"]


def form_state(html: str) -> FormState:
    parser = FormState()
    parser.feed(html)
    return parser


async def test_a_form_with_errors_comes_back_as_it_was_filled_in(client):
    form = [
        ("figure", "histogram"),
        ("figure", "waves"),
        ("copies.histogram", "2"),
        ("copies.waves", "0"),
        ("histogram.bins", "0"),
        ("histogram.n", "many"),
        ("histogram.seed", "12"),
        ("waves.components", "4"),
        ("output", "zip"),
        ("paper", "letter"),
        ("format", "gif"),
        ("w", "640"),
    ]
    resp = await client.post("/jobs", data=urlencode(form), headers={**FORM, "Accept": "text/html"})
    assert resp.status_code == 400
    assert resp.mimetype == "text/html"
    html = await resp.get_data(as_text=True)
    state = form_state(html)
    assert state.ticked == ["histogram", "waves"]
    assert {k: state.values[k] for k in ("copies.histogram", "copies.waves", "w")} == {
        "copies.histogram": "2",
        "copies.waves": "0",
        "w": "640",
    }
    assert (state.values["output"], state.values["paper"]) == ("zip", "letter")
    assert "whole number from 1" in html  # the copies' error, at its field
    assert sorted(state.invalid) == ["copies.waves", "format"]
    # Fixed: the figures' own errors come next, at their fields, with what was sent kept.
    form[3] = ("copies.waves", "1")
    resp = await client.post("/jobs", data=urlencode(form), headers={**FORM, "Accept": "text/html"})
    html = await resp.get_data(as_text=True)
    state = form_state(html)
    assert sorted(state.invalid) == ["format", "histogram.bins", "histogram.n"]
    assert state.values["histogram.n"] == "many" and state.values["histogram.seed"] == "12"
    assert state.values["waves.components"] == "4"
    assert (await (await client.get("/jobs")).get_json())["jobs"] == []


async def test_the_gallery_form_starts_with_what_a_person_would_pick(client):
    html = await (await client.get("/")).get_data(as_text=True)
    state = form_state(html)
    names = [spec.name for spec in FIGURES]
    assert state.ticked == names  # every figure once: a catalogue of them
    assert {state.values[f"copies.{n}"] for n in names} == {"1"}
    assert (state.values["output"], state.values["paper"]) == ("pdf", "a4")
    assert state.invalid == []


async def test_jobs_are_in_the_openapi_document(client):
    doc = await (await client.get("/openapi.json")).get_json()
    assert set(doc["paths"]["/jobs"]) == {"get", "post"}
    assert set(doc["paths"]["/jobs/{job_id}"]) == {"get", "delete"}
    post = doc["paths"]["/jobs"]["post"]
    assert post["tags"] == ["jobs"]
    assert "202" in post["responses"]
    assert "application/json" in post["requestBody"]["content"]


# --- downloads ---------------------------------------------------------------------------------


async def test_a_result_is_streamed_with_ranges_and_validators(app):
    issued_token = token_for(app)
    data = bytes(range(256)) * 4096  # 1 MiB: several windows
    job_id = store_done(app, token_hash(issued_token), data)
    client = with_cookie(app, issued_token)
    whole = await client.get(f"/jobs/{job_id}/result")
    assert whole.status_code == 200 and await whole.get_data() == data
    assert whole.headers["Content-Length"] == str(len(data))
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert (
        whole.headers["Content-Disposition"] == f'attachment; filename="figserve-{job_id[:8]}.pdf"'
    )
    part = await client.get(f"/jobs/{job_id}/result", headers={"Range": "bytes=1000-299999"})
    assert part.status_code == 206 and await part.get_data() == data[1000:300000]
    assert part.headers["Content-Range"] == f"bytes 1000-299999/{len(data)}"
    same = await client.get(
        f"/jobs/{job_id}/result", headers={"If-None-Match": whole.headers["ETag"]}
    )
    assert same.status_code == 304
    beyond = await client.get(f"/jobs/{job_id}/result", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize(
    ("header", "status", "expected"),
    [
        ("bytes=-10", 206, slice(990, 1000)),  # a suffix
        ("bytes=-5000", 206, slice(0, 1000)),  # a suffix longer than the body: all of it
        ("bytes=990-5000", 206, slice(990, 1000)),
        ("bytes=0-0", 206, slice(0, 1)),
        ("bytes=0-99, 100-199", 206, slice(0, 200)),  # touching: coalesced into one
        ("bytes=50-99, 0-60", 206, slice(0, 100)),  # overlapping, in any order
        ("bytes=0-9, 500-509", 200, slice(0, 1000)),  # apart: the whole body
        ("bytes=0-9, 2000-3000", 206, slice(0, 10)),  # an unsatisfiable part is dropped
        ("bytes=1000-", 416, None),
        ("bytes=-0", 416, None),
        ("bytes=5-1", 200, slice(0, 1000)),  # invalid: ignored
        ("bytes=abc", 200, slice(0, 1000)),
        ("items=0-9", 200, slice(0, 1000)),  # another unit: ignored
        ("BYTES = 10-19", 206, slice(10, 20)),
    ],
)
async def test_ranges_follow_rfc_9110(app, header, status, expected):
    data = bytes(range(250)) * 4
    issued_token = token_for(app)
    job_id = store_done(app, token_hash(issued_token), data)
    resp = await with_cookie(app, issued_token).get(
        f"/jobs/{job_id}/result", headers={"Range": header}
    )
    assert resp.status_code == status
    body = await resp.get_data()
    if status == 416:
        assert resp.headers["Content-Range"] == "bytes */1000"
        assert resp.mimetype == "application/problem+json"
        return
    assert body == data[expected]
    assert resp.headers["Content-Length"] == str(len(body))
    if status == 206:
        assert resp.headers["Content-Range"] == (f"bytes {expected.start}-{expected.stop - 1}/1000")
    else:
        assert "Content-Range" not in resp.headers


async def test_if_range_lets_a_range_apply_only_to_the_same_result(app):
    data = b"0123456789" * 50
    issued_token = token_for(app)
    job_id = store_done(app, token_hash(issued_token), data)
    client = with_cookie(app, issued_token)
    whole = await client.get(f"/jobs/{job_id}/result")
    etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
    for if_range, status in [(etag, 206), (modified, 206), ('"other"', 200), ("W/" + etag, 200)]:
        resp = await client.get(
            f"/jobs/{job_id}/result", headers={"Range": "bytes=5-9", "If-Range": if_range}
        )
        assert resp.status_code == status, if_range
        assert await resp.get_data() == (data[5:10] if status == 206 else data)
    changed = await client.get(f"/jobs/{job_id}/result", headers={"If-Match": '"other"'})
    assert changed.status_code == 412
    unchanged = await client.get(f"/jobs/{job_id}/result", headers={"If-Modified-Since": modified})
    assert unchanged.status_code == 304


range_spec = st.one_of(
    st.tuples(st.just("int"), st.integers(0, 1200), st.none() | st.integers(0, 1200)),
    st.tuples(st.just("suffix"), st.integers(0, 1500)),
    st.tuples(st.just("junk"), st.sampled_from(["", "x", "1-2-3", "-", "+1-2", "1 - 2"])),
)


def spec_text(spec: tuple) -> str:
    if spec[0] == "int":
        return f"{spec[1]}-" + ("" if spec[2] is None else str(spec[2]))
    if spec[0] == "suffix":
        return f"-{spec[1]}"
    return spec[1]


def expected_answer(specs: list[tuple], size: int) -> tuple[int, range | None]:
    """What RFC 9110 asks for: status, and the bytes sent (by their positions)."""
    texts = [spec_text(s).strip() for s in specs]
    if any(s[0] == "junk" and t for s, t in zip(specs, texts, strict=True)):
        return 200, range(size)
    if any(s[0] == "int" and s[2] is not None and s[2] < s[1] for s in specs):
        return 200, range(size)
    if not any(texts):
        return 200, range(size)
    covered: set[int] = set()
    for spec in specs:
        if spec[0] == "int" and spec[1] < size:
            last = size - 1 if spec[2] is None else min(size - 1, spec[2])
            covered.update(range(spec[1], last + 1))
        elif spec[0] == "suffix" and spec[1] > 0:
            covered.update(range(max(0, size - spec[1]), size))
    if not covered:
        return 416, None
    low, high = min(covered), max(covered)
    if len(covered) != high - low + 1:
        return 200, range(size)  # several ranges apart
    return 206, range(low, high + 1)


@FAST
@given(specs=st.lists(range_spec, min_size=1, max_size=4), size=st.integers(1, 1100))
async def test_any_range_answers_as_a_reference_slice_of_the_bytes(app, specs, size):
    data = bytes((i * 7) % 256 for i in range(size))
    issued_token = token_for(app)
    job_id = store_done(app, token_hash(issued_token), data)
    header = "bytes=" + ",".join(spec_text(s) for s in specs)
    resp = await with_cookie(app, issued_token).get(
        f"/jobs/{job_id}/result", headers={"Range": header}
    )
    status, positions = expected_answer(specs, size)
    assert resp.status_code == status, header
    if status == 416:
        assert resp.headers["Content-Range"] == f"bytes */{size}"
        return
    assert positions is not None
    assert await resp.get_data() == data[positions.start : positions.stop]
    if status == 206:
        expected = f"bytes {positions.start}-{positions.stop - 1}/{size}"
        assert resp.headers["Content-Range"] == expected


async def test_job_items_take_whole_numbers_written_as_floats(app):
    client = app.test_client()
    items = [{"figure": "histogram", "params": {"bins": 136.0, "seed": 2.0}, "w": 320.0}]
    resp = await client.post("/jobs", json={"items": items, "output": "zip"})
    assert resp.status_code == 202, await resp.get_data(as_text=True)
    for wrong in (136.5, True, "136"):
        items = [{"figure": "histogram", "params": {"bins": wrong}}]
        resp = await client.post("/jobs", json={"items": items, "output": "zip"})
        assert resp.status_code == 400
        assert (await resp.get_json())["param"] == "items.0.params.bins"
