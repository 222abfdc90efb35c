"""Running jobs: life cycle, results, progress, cancel, expiry, and nothing lost when a worker
stops or a render process dies."""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
from urllib.parse import urlencode
from xml.etree import ElementTree

import pypdf
import pytest

from figserve.app import create_app
from figserve.jobs import Admission, JobState, new_job_id
from figserve.jobs.sqlite import JobsDatabase
from figserve.web.owner import COOKIE, new_token, token_hash
from tests.conftest import decode
from tests.jobs.conftest import (
    FORM,
    WAIT,
    dead_pid,
    entered,
    files_in,
    gated,
    get_job,
    lane_of,
    own,
    record_of,
    runner_of,
    start,
    store_of,
)
from tests.support.waiting import until

MANY = Admission(max_active=10)


async def test_pdf_job_from_queued_to_downloaded(app, client, jobs_dir):
    items = [
        {"figure": "waves", "params": {"components": 2}},
        {"figure": "normal", "params": {"seed": 3}, "w": 500, "h": 250},
        {"figure": "histogram", "params": {"seed": 1, "bins": 10}},
    ]
    created = await start(client, items, paper="figure")
    assert created["state"] in {"queued", "running"}
    assert (created["done"], created["total"], created["output"]) == (0, 3, "pdf")
    assert created["result_url"] is None

    ended = await runner_of(app).wait(created["id"], WAIT)
    assert ended is not None and ended.state is JobState.DONE
    job = await get_job(client, created["id"])
    assert (job["state"], job["done"], job["total"], job["progress"]) == ("done", 3, 3, 1.0)
    assert job["error"] is None
    assert job["created"] <= job["started"] <= job["finished"] < job["expires"]
    assert job["seconds"] >= 0
    assert job["result_url"] == f"/jobs/{job['id']}/result"

    resp = await client.get(job["result_url"])
    assert resp.status_code == 200
    assert resp.mimetype == "application/pdf"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    data = await resp.get_data()
    assert len(data) == job["result_bytes"] == int(resp.headers["Content-Length"])
    pdf = pypdf.PdfReader(io.BytesIO(data))
    assert len(pdf.pages) == len(items)
    # One page per figure at the figure's size: 100 CSS pixels are 72 points.
    sizes = [(round(float(p.mediabox.width)), round(float(p.mediabox.height))) for p in pdf.pages]
    assert sizes == [(288, 216), (360, 180), (288, 216)]
    assert files_in(jobs_dir) == [f"{job['id']}.pdf"]  # its item files are gone


@pytest.mark.parametrize(("paper", "size"), [("a4", (595, 842)), ("letter", (612, 792))])
async def test_a_pdf_report_is_on_paper_with_a_caption_per_page(app, client, paper, size):
    items = [
        {"figure": "histogram", "params": {"seed": 4, "bins": 12}, "w": 800, "h": 300},
        {"figure": "waves", "w": 300, "h": 900},
    ]
    job = await start(client, items, paper=paper)
    assert (await runner_of(app).wait(job["id"], WAIT)).state is JobState.DONE
    data = await (await client.get(f"/jobs/{job['id']}/result")).get_data()
    pdf = pypdf.PdfReader(io.BytesIO(data))
    for page in pdf.pages:
        assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == size
    first, second = (" ".join(p.extract_text().split()) for p in pdf.pages)
    assert "Histogram with fitted density" in first and "seed = 4" in first
    assert "bins = 12" in first and "800 × 300 px" in first and "1 / 2" in first  # noqa: RUF001
    assert "Damped waves" in second and "2 / 2" in second
    assert [o.title for o in pdf.outline] == [
        "1. Histogram with fitted density",
        "2. Damped waves",
    ]


async def test_seeded_pdf_report_is_byte_identical(app, client):
    items = [{"figure": "histogram", "params": {"seed": 5}}, {"figure": "waves"}]
    results = []
    for _ in range(2):
        job = await start(client, items)
        await runner_of(app).wait(job["id"], WAIT)
        results.append(await (await client.get(f"/jobs/{job['id']}/result")).get_data())
    assert results[0] == results[1]


async def test_zip_entries_are_the_bytes_the_image_urls_give(app, client):
    items = [
        {"figure": "histogram", "params": {"seed": 5}, "format": "png"},
        {"figure": "heatmap", "params": {"seed": 6}, "format": "webp", "dpr": 2},
        {"figure": "waves", "format": "svg"},
    ]
    job = await start(client, items, "zip")
    assert (await runner_of(app).wait(job["id"], WAIT)).state is JobState.DONE
    archive = zipfile.ZipFile(
        io.BytesIO(await (await client.get(f"/jobs/{job['id']}/result")).get_data())
    )
    urls = [
        "/figures/histogram.png?seed=5",
        "/figures/heatmap.webp?seed=6&dpr=2",
        "/figures/waves.svg",
    ]
    for name, url in zip(archive.namelist(), urls, strict=True):
        assert archive.read(name) == await (await client.get(url)).get_data(), name


async def test_an_item_whose_render_process_dies_is_rendered_again(app, client, gate, jobs_dir):
    job = await start(client, [gated(gate, "a"), gated(gate, "b")])
    await entered(gate, 1)
    (victim,) = gate.pids()
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    await until(lambda: len(gate.started()) == 2, "item 1 to begin again", WAIT)
    assert gate.started() == ["a", "a"]
    gate.let_through("a")
    gate.let_through("b")
    ended = await runner_of(app).wait(job["id"], WAIT)
    assert ended is not None and (ended.state, ended.done) == (JobState.DONE, 2)
    data = await (await client.get(f"/jobs/{job['id']}/result")).get_data()
    assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == 2


async def test_an_item_that_keeps_killing_its_process_fails_the_job_with_a_reason(app, client):
    job = await start(client, [{"figure": "waves"}, {"figure": "crash"}])
    ended = await runner_of(app).wait(job["id"], WAIT)
    assert ended is not None and (ended.state, ended.done) == (JobState.FAILED, 1)
    assert ended.error == "item 2: the render process died during the render"


async def test_zip_job_entries_decode(app, client):
    items = [
        {"figure": "waves", "format": "png", "w": 300, "h": 200},
        {"figure": "heatmap", "params": {"seed": 2}, "format": "webp", "dpr": 2},
        {"figure": "normal", "params": {"seed": 4}, "format": "jpeg"},
        {"figure": "timeseries", "params": {"seed": 1}, "format": "svg"},
        {"figure": "waves", "format": "pdf"},
    ]
    job = await start(client, items, output="zip")
    assert (await runner_of(app).wait(job["id"], WAIT)).state is JobState.DONE
    resp = await client.get(f"/jobs/{job['id']}/result")
    assert resp.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(await resp.get_data()))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [
        "1-waves.png",
        "2-heatmap.webp",
        "3-normal.jpeg",
        "4-timeseries.svg",
        "5-waves.pdf",
    ]
    sizes = [decode(archive.read(name)).size for name in names[:3]]
    assert sizes == [(300, 200), (800, 600), (400, 300)]
    assert [decode(archive.read(n)).format for n in names[:3]] == ["PNG", "WEBP", "JPEG"]
    svg = ElementTree.fromstring(archive.read(names[3]))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(pypdf.PdfReader(io.BytesIO(archive.read(names[4]))).pages) == 1


async def test_progress_is_visible_item_by_item(app, client, gate):
    job = await start(client, [gated(gate, t) for t in "abc"])
    await entered(gate, 1)
    seen = await get_job(client, job["id"])
    assert (seen["state"], seen["done"]) == ("running", 0)
    assert "worker" not in seen
    assert seen["result_url"] is None
    resp = await client.get(f"/jobs/{job['id']}/result")
    assert resp.status_code == 409
    assert resp.headers["Retry-After"]
    # An item's progress is stored before the next item begins.
    gate.let_through("a")
    await entered(gate, 2)
    assert (await get_job(client, job["id"]))["done"] == 1
    gate.let_through("b")
    await entered(gate, 3)
    assert (await get_job(client, job["id"]))["done"] == 2
    gate.let_through("c")
    assert (await runner_of(app).wait(job["id"], WAIT)).state is JobState.DONE
    assert (await get_job(client, job["id"]))["done"] == 3


async def test_cancel_mid_way_stops_rendering_and_removes_the_item_files(
    app, client, gate, jobs_dir
):
    job = await start(client, [gated(gate, t) for t in "abcdef"])
    gate.let_through("a")
    gate.let_through("b")
    await entered(gate, 3)  # items 1 and 2 are done, item 3 is drawing
    assert files_in(jobs_dir) == [f"{job['id']}.parts"]

    resp = await client.delete(f"/jobs/{job['id']}")
    assert resp.status_code == 200
    assert (await resp.get_json())["state"] == "cancelled"
    gate.let_through("c")  # item 3 may finish; no item after it may begin
    ended = await runner_of(app).wait(job["id"], WAIT)
    assert ended is not None and ended.state is JobState.CANCELLED
    assert ended.done == 2
    assert sorted(gate.started()) == ["a", "b", "c"]
    assert files_in(jobs_dir) == []
    resp = await client.get(f"/jobs/{job['id']}/result")
    assert resp.status_code == 409
    assert "cancelled" in (await resp.get_json())["detail"]

    # Deleting an ended job removes it.
    assert (await client.delete(f"/jobs/{job['id']}")).status_code == 204
    assert (await client.get(f"/jobs/{job['id']}")).status_code == 404


async def test_cancel_a_queued_job(app, client, gate):
    first = await start(client, [gated(gate, "a")])
    await entered(gate, 1)  # the only job slot is busy: the next job stays queued
    second = await start(client, [{"figure": "waves"}])
    assert (await get_job(client, second["id"]))["state"] == "queued"
    resp = await client.delete(f"/jobs/{second['id']}")
    assert (await resp.get_json())["state"] == "cancelled"
    gate.let_through("a")
    assert (await runner_of(app).wait(first["id"], WAIT)).state is JobState.DONE
    # Once the slot is free the cancelled job is not picked up.
    await lane_of(app).tick()
    job = await get_job(client, second["id"])
    assert (job["state"], job["done"], job["started"]) == ("cancelled", 0, None)


async def test_an_item_that_fails_to_draw_fails_the_job(app, client, jobs_dir):
    job = await start(client, [{"figure": "waves"}, {"figure": "broken"}, {"figure": "waves"}])
    ended = await runner_of(app).wait(job["id"], WAIT)
    assert ended is not None
    assert (ended.state, ended.done) == (JobState.FAILED, 1)
    shown = await get_job(client, job["id"])
    assert shown["error"] == "item 2 could not be rendered; the error has been logged"
    assert files_in(jobs_dir) == []


async def test_output_byte_limit_fails_the_job(app_config, jobs_dir):
    application = create_app({**app_config, "job_max_output_bytes": 20_000})
    async with application.test_app():
        client = application.test_client()
        runner = runner_of(application)
        heatmaps = [{"figure": "heatmap", "params": {"seed": s}} for s in range(8)]
        # The output grows item by item: it stops as soon as it passes the limit.
        for output in ("zip", "pdf"):
            job = await start(client, heatmaps, output=output)
            ended = await runner.wait(job["id"], WAIT)
            assert ended is not None and ended.state is JobState.FAILED
            assert "20,000 bytes" in ended.error
            assert 1 <= ended.done < 8
            shown = await get_job(client, job["id"])
            assert (shown["state"], shown["error"]) == ("failed", ended.error)
        assert files_in(jobs_dir) == []


async def test_results_expire_and_are_removed(app, client, jobs_dir):
    runner = runner_of(app)
    now = [time.time()]
    runner.clock = lambda: now[0]
    job = await start(client, [{"figure": "waves"}])
    await runner.wait(job["id"], WAIT)
    assert files_in(jobs_dir) == [f"{job['id']}.pdf"]
    ttl = runner.settings.job_result_ttl

    now[0] += ttl - 1
    await runner.upkeep()
    assert (await client.get(f"/jobs/{job['id']}/result")).status_code == 200

    now[0] += 2
    await runner.upkeep()
    assert files_in(jobs_dir) == []
    resp = await client.get(f"/jobs/{job['id']}")
    assert resp.status_code == 404
    assert "removed" in (await resp.get_json())["detail"]


async def test_leftovers_are_removed_at_start(app_config, jobs_dir):
    results = jobs_dir / "results"
    results.mkdir(parents=True)
    store = JobsDatabase(jobs_dir / "jobs.sqlite3")
    kept, expired, failed = new_job_id(), new_job_id(), new_job_id()
    token = new_token(b"k" * 32)
    mine = token_hash(token)
    store.create(record_of(kept, JobState.DONE, expires=time.time() + 3600, client=mine), [], MANY)
    store.create(record_of(expired, JobState.DONE, expires=time.time() - 1, client=mine), [], MANY)
    store.create(
        record_of(failed, JobState.FAILED, expires=time.time() + 3600, client=mine), [], MANY
    )
    store.close()
    for name in [
        f"{kept}.pdf",
        f"{expired}.pdf",
        f"{failed}.pdf.building",
        f"{new_job_id()}.zip.building",  # a job that no longer exists
        "stray.txt",
    ]:
        (results / name).write_bytes(b"x")
    (results / f"{failed}.parts").mkdir()
    (results / f"{failed}.parts" / "0").write_bytes(b"x")

    application = create_app({**app_config, "owner_secret": "k" * 32})
    async with application.test_app():
        client = application.test_client()
        client.set_cookie("localhost", COOKIE, token, path="/jobs")
        assert files_in(jobs_dir) == [f"{kept}.pdf"]
        assert (await client.get(f"/jobs/{expired}")).status_code == 404
        assert (await get_job(client, failed))["state"] == "failed"


async def test_jobs_of_dead_workers_go_back_to_the_queue_until_their_attempts_run_out(
    app_config,
):
    # A long poll interval: only the explicit ticks below take jobs back.
    application = create_app({**app_config, "job_poll_interval": 3600, "job_threads": 1})
    async with application.test_app():
        client = application.test_client()
        runner = runner_of(application)
        lane = lane_of(application)
        store = store_of(application).db
        mine = own(application, client)
        quiet = time.time() - runner.settings.job_stale_after - 5
        gone = dead_pid()
        ids = {name: new_job_id() for name in ("stale", "exhausted", "dead_here", "alive")}
        for name, owner, beat, attempts in [
            ("stale", "elsewhere:1:aa", quiet, 1),
            ("exhausted", "elsewhere:2:bb", quiet, runner.settings.job_max_attempts),
            ("dead_here", f"{lane.host}:{gone}:cc", time.time(), 1),
            ("alive", "elsewhere:3:dd", time.time(), 1),
        ]:
            record = record_of(
                ids[name],
                JobState.RUNNING,
                owner=owner,
                started=beat,
                heartbeat=beat,
                attempts=attempts,
                done=1,
                client=mine,
            )
            store.create(record, [{"figure": "waves"}, {"figure": "waves"}], MANY)
        lane.slots = 0  # look only: claim nothing in this round
        await lane.tick()
        states = {n: (await get_job(client, i))["state"] for n, i in ids.items()}
        assert states == {
            "stale": "queued",
            "exhausted": "failed",
            "dead_here": "queued",  # a dead process of this machine: no need to wait
            "alive": "running",
        }
        failed = await get_job(client, ids["exhausted"])
        assert "interrupted 3 times" in failed["error"]
        assert "worker" not in failed
        requeued = store.get(ids["stale"])
        assert requeued is not None and (requeued.done, requeued.owner) == (1, None)


async def test_stopping_gives_a_running_job_back_and_the_next_start_resumes_it(
    app_config, gate, jobs_dir
):
    application = create_app(app_config)
    async with application.test_app():
        client = application.test_client()
        job = await start(client, [gated(gate, "a"), gated(gate, "b")])
        gate.let_through("a")
        await entered(gate, 2)  # item 1 is done, item 2 is drawing
    # The stop did not wait for item 2: its process was killed, the job went back.
    store = JobsDatabase(jobs_dir / "jobs.sqlite3")
    try:
        record = store.get(job["id"])
        assert record is not None
        assert (record.state, record.done, record.owner) == (JobState.QUEUED, 1, None)
        assert record.attempts == 0  # an orderly stop does not count as an attempt
    finally:
        store.close()
    assert files_in(jobs_dir) == [f"{job['id']}.parts"]

    gate.let_through("b")
    owner = client.cookie_jar
    application = create_app(app_config)
    async with application.test_app():
        ended = await runner_of(application).wait(job["id"], WAIT)
        assert ended is not None
        assert (ended.state, ended.done) == (JobState.DONE, 2)
        client = application.test_client()
        client.cookie_jar = owner  # the same browser, after the restart
        data = await (await client.get(f"/jobs/{job['id']}/result")).get_data()
        assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == 2
    assert sorted(gate.started()) == ["a", "b", "b"]  # item 1 was not drawn again


async def test_gallery_form_starts_a_report(app, client):
    resp = await client.get("/")
    html = await resp.get_data(as_text=True)
    assert 'action="/jobs"' in html
    assert 'name="copies.histogram"' in html
    assert 'name="histogram.bins"' in html

    form = [
        ("figure", "histogram"),
        ("figure", "waves"),
        ("copies.histogram", "3"),
        ("copies.waves", "2"),
        ("histogram.seed", "7"),
        ("histogram.bins", "12"),
        ("histogram.title", ""),
        ("copies.heatmap", "5"),  # not ticked: ignored
        ("output", "pdf"),
        ("format", "png"),
        ("w", "500"),
        ("h", ""),
    ]
    resp = await client.post("/jobs", data=urlencode(form), headers=FORM)
    assert resp.status_code == 303
    job_id = resp.headers["Location"].rsplit("/", 1)[1]
    runner = runner_of(app)
    items = await runner.store.items(job_id)
    assert [i["figure"] for i in items] == ["histogram"] * 3 + ["waves"] * 2
    assert [i["params"]["seed"] for i in items[:3]] == [7, 8, 9]
    assert {i["params"]["bins"] for i in items[:3]} == {12}
    assert {(i["options"]["w"], i["options"]["h"]) for i in items} == {(500, 300)}
    ended = await runner.wait(job_id, WAIT)
    assert ended is not None and ended.state is JobState.DONE
    data = await (await client.get(f"/jobs/{job_id}/result")).get_data()
    assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == 5


async def test_job_pages_for_browsers(app, client):
    job = await start(client, [{"figure": "waves"}])
    await runner_of(app).wait(job["id"], WAIT)
    resp = await client.get(f"/jobs/{job['id']}", headers={"Accept": "text/html"})
    assert resp.status_code == 200
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = await resp.get_data(as_text=True)
    assert '<progress id="job-progress" max="1" value="1"' in html
    assert f'href="/jobs/{job["id"]}/result"' in html
    assert "/static/jobs.js" in html
    assert " style=" not in html and "<script>" not in html  # the CSP forbids inline code

    listing = await client.get("/jobs", headers={"Accept": "text/html"})
    assert job["id"][:8] in await listing.get_data(as_text=True)
    listed = (await (await client.get("/jobs")).get_json())["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]

    missing = await client.get(f"/jobs/{new_job_id()}", headers={"Accept": "text/html"})
    assert missing.status_code == 404
    assert missing.mimetype == "text/html"
