"""Job requests: every bad item is named, nothing is queued, and the limits hold."""

from __future__ import annotations

import pytest

from figserve.app import create_app
from tests.jobs.conftest import (
    WAIT,
    files_in,
    gated,
    runner_of,
    start,
)


async def test_every_bad_item_is_listed_and_nothing_is_queued(app, client, jobs_dir):
    resp = await client.post(
        "/jobs",
        json={
            "items": [
                {"figure": "waves"},
                {"figure": "no_such_figure"},
                {"figure": "normal", "params": {"n": 0}},
                {"figure": "waves", "w": 10, "colour": "red"},
                {"figure": "heatmap", "format": "png"},
                "waves",
                # Past the pixel limit: drawn at the density that fits, not an error.
                {"figure": "waves", "w": 3000, "h": 3000, "dpr": 3},
                {"figure": "waves", "params": {"components": "3"}},
            ],
            "output": "pdf",
        },
    )
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json"
    problem = await resp.get_json()
    params = [e["param"] for e in problem["errors"]]
    assert params == [
        "items.1.figure",
        "items.2.params.n",
        "items.3.colour",
        "items.3.w",
        "items.4.format",
        "items.5",
        "items.7.params.components",  # JSON values have their types: 3, not "3"
    ]
    assert problem["param"] == "items.1.figure"
    assert "no_such_figure" in problem["errors"][0]["message"]
    assert "valid integer" in problem["errors"][-1]["message"]
    assert (await (await client.get("/jobs")).get_json())["jobs"] == []
    assert files_in(jobs_dir) == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"items": []}, "items"),
        ({"items": {"figure": "waves"}}, "items"),
        ({"output": "pdf"}, "items"),
        ({"items": [{"figure": "waves"}], "output": "tar"}, "output"),
        ({"items": [], "output": {}}, "output"),
        ({"items": [{"figure": ["waves"]}], "output": ["pdf"]}, "output"),
        ({"items": [{"figure": "waves"}], "priority": 1}, "priority"),
        ([{"figure": "waves"}], "body"),
    ],
)
async def test_bad_job_bodies_name_the_parameter(client, body, param):
    resp = await client.post("/jobs", json=body)
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == param


async def test_item_and_active_job_limits(app_config, gate):
    application = create_app({**app_config, "job_max_items": 3, "job_max_active": 1})
    try:
        async with application.test_app():
            client = application.test_client()
            resp = await client.post("/jobs", json={"items": [{"figure": "waves"}] * 4})
            assert resp.status_code == 400
            problem = await resp.get_json()
            assert problem["param"] == "items"
            assert "at most 3" in problem["detail"]

            job = await start(client, [gated(gate, "a")])
            resp = await client.post("/jobs", json={"items": [{"figure": "waves"}]})
            assert resp.status_code == 503
            assert resp.headers["Retry-After"]
            assert "limit is 1" in (await resp.get_json())["detail"]
            gate.let_through("a")
            await runner_of(application).wait(job["id"], WAIT)
            # The limit counts active jobs only: with that one done, a new one is accepted.
            await start(client, [{"figure": "waves"}])
    finally:
        gate.open()


async def test_pdf_pixel_budget(app_config):
    application = create_app({**app_config, "job_max_pdf_pixels": 1_000_000})
    async with application.test_app():
        client = application.test_client()
        items = [{"figure": "waves", "w": 500, "h": 500}] * 5  # 1,250,000 pixels
        resp = await client.post("/jobs", json={"items": items})
        assert resp.status_code == 400
        problem = await resp.get_json()
        assert problem["param"] == "items"
        assert "1,250,000" in problem["detail"]
        # The same figures as separate images do not stay in memory.
        await start(client, items, output="zip")
