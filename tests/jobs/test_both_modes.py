"""The same reports through the app in both modes: embedded (SQLite, a runner per worker) and
scale-out (a real redis-server, SAQ workers in process). Whatever the store and the lane, a job
moves the same way: its result, its failures, its cancel, its limits, its privacy."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pypdf
import pytest
from quart import Quart

from figserve.app import create_app
from figserve.jobs import JobState
from tests.jobs.conftest import WAIT, entered, gated, runner_of, start, token_for
from tests.support.gates import Gate, registry_with_test_figures
from tests.support.redis import RedisServer
from tests.support.waiting import until

MODES = ["embedded", "scale-out"]


@pytest.fixture(params=MODES)
async def app(
    request, tmp_path: Path, gate: Gate, redis_service: RedisServer
) -> AsyncIterator[Quart]:
    config = {
        "warm_up": False,
        "jobs_dir": str(tmp_path / "jobs"),
        "registry": registry_with_test_figures(),
        "render_processes": 1,
        "job_threads": 1,
        "job_poll_interval": 0.2,
        "job_stale_after": 5,
    }
    if request.param == "scale-out":
        redis_service.command("FLUSHALL")
        config |= {"redis_url": redis_service.url, "shared_cache_bytes": 0}
    application = create_app(config)
    try:
        async with application.test_app():
            yield application
    finally:
        gate.open()


@pytest.fixture
def client(app: Quart):
    client = app.test_client()
    client.set_cookie("localhost", "figserve_owner", token_for(app), path="/jobs")
    return client


async def done(app: Quart, job_id: str):
    ended = await runner_of(app).wait(job_id, WAIT)
    assert ended is not None
    return ended


async def test_a_pdf_report_is_drawn_captioned_and_downloaded_in_ranges(app, client):
    items = [{"figure": "histogram", "params": {"seed": 2}}, {"figure": "waves"}]
    job = await start(client, items, paper="letter")
    ended = await done(app, job["id"])
    assert (ended.state, ended.done, ended.paper) == (JobState.DONE, 2, "letter")
    resp = await client.get(f"/jobs/{job['id']}/result")
    data = await resp.get_data()
    pdf = pypdf.PdfReader(io.BytesIO(data))
    assert [round(float(p.mediabox.height)) for p in pdf.pages] == [792, 792]
    assert "seed = 2" in pdf.pages[0].extract_text()
    tail = await client.get(f"/jobs/{job['id']}/result", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and await tail.get_data() == data[-100:]
    past = await client.get(f"/jobs/{job['id']}/result", headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"


async def test_zip_entries_are_the_bytes_the_image_urls_give(app, client):
    items = [
        {"figure": "histogram", "params": {"seed": 5}, "format": "png"},
        {"figure": "waves", "format": "svg"},
    ]
    job = await start(client, items, "zip")
    assert (await done(app, job["id"])).state is JobState.DONE
    data = await (await client.get(f"/jobs/{job['id']}/result")).get_data()
    archive = zipfile.ZipFile(io.BytesIO(data))
    urls = ["/figures/histogram.png?seed=5", "/figures/waves.svg"]
    for name, url in zip(archive.namelist(), urls, strict=True):
        assert archive.read(name) == await (await client.get(url)).get_data(), name


async def test_a_cancel_stops_the_job_and_no_later_item_begins(app, client, gate):
    job = await start(client, [gated(gate, t) for t in "abcd"])
    gate.let_through("a")
    await entered(gate, 2)
    resp = await client.delete(f"/jobs/{job['id']}")
    assert (await resp.get_json())["state"] == "cancelled"
    gate.let_through("b")
    ended = await done(app, job["id"])
    assert ended.state is JobState.CANCELLED
    await until(lambda: not runner_of(app).busy(), "the lane to let go", WAIT)
    assert sorted(gate.started()) == ["a", "b"]
    assert (await client.get(f"/jobs/{job['id']}/result")).status_code == 409
    assert (await client.delete(f"/jobs/{job['id']}")).status_code == 204
    assert (await client.get(f"/jobs/{job['id']}")).status_code == 404


async def test_an_item_that_fails_fails_the_job_with_a_reason(app, client):
    job = await start(client, [{"figure": "waves"}, {"figure": "broken"}])
    ended = await done(app, job["id"])
    assert ended.state is JobState.FAILED
    assert ended.error == "item 2 could not be rendered; the error has been logged"
    assert "secret" not in ended.error


async def test_someone_elses_job_is_not_there(app, client):
    job = await start(client, [{"figure": "waves"}])
    stranger = app.test_client()
    stranger.set_cookie("localhost", "figserve_owner", token_for(app), path="/jobs")
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/result"):
        assert (await stranger.get(path)).status_code == 404
    assert (await stranger.delete(f"/jobs/{job['id']}")).status_code == 404
    assert (await (await stranger.get("/jobs")).get_json())["jobs"] == []
    assert (await done(app, job["id"])).state is JobState.DONE
