"""/openapi.json and /docs say what a client needs: bodies with examples that work, every path
parameter described, statuses in order, and who may call the job routes."""

from __future__ import annotations

import html as html_module
import io
import re
from pathlib import Path

import pytest
from quart import Quart
from quart.datastructures import FileStorage

from figserve.app import create_app
from figserve.figures import FIGURES, Registry
from figserve.web.apidocs import endpoints
from figserve.web.owner import COOKIE

BODIES = {("post", "/api/render"), ("post", "/api/plot"), ("post", "/jobs")}


@pytest.fixture
def app_config(jobs_dir: Path) -> dict:
    return {"warm_up": False, "jobs_dir": str(jobs_dir), "job_threads": 0}


async def _document(app: Quart) -> dict:
    return await (await app.test_client().get("/openapi.json")).get_json()


async def test_statuses_come_in_order_and_path_parameters_are_described(app) -> None:
    doc = await _document(app)
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            statuses = list(op["responses"])
            assert statuses == sorted(statuses), (method, path)
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert param.get("description"), (method, path, param["name"])


async def test_request_bodies_have_examples_the_server_accepts(app) -> None:
    doc = await _document(app)
    found = set()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if "requestBody" in op:
                found.add((method, path))
                (content,) = op["requestBody"]["content"].values()
                assert "example" in content, (method, path)
    assert found == BODIES
    client = app.test_client()
    render = doc["paths"]["/api/render"]["post"]["requestBody"]["content"]["application/json"]
    resp = await client.post("/api/render", json=render["example"])
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"
    job = doc["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert (await client.post("/jobs", json=job["example"])).status_code == 202
    form = doc["paths"]["/api/plot"]["post"]["requestBody"]["content"]["multipart/form-data"]
    example = dict(form["example"])
    data = example.pop("file").encode()
    files = {"file": _upload(data)}
    resp = await client.post("/api/plot", form=example, files=files)
    assert resp.status_code == 200, await resp.get_data(as_text=True)


def _upload(data: bytes) -> FileStorage:
    return FileStorage(io.BytesIO(data), filename="data.csv", content_type="text/csv")


async def test_the_owner_cookie_is_a_declared_security_scheme(app) -> None:
    doc = await _document(app)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ownerCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE,
        "description": schemes["ownerCookie"]["description"],
    }
    assert schemes["adminToken"]["scheme"] == "bearer"
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if not path.startswith("/jobs"):
                assert "security" not in op, (method, path)
            elif path == "/jobs":  # starting and listing: anyone (the cookie says whose)
                assert {} in op["security"] and {"ownerCookie": []} in op["security"]
            else:  # one job: its owner's cookie, or the operator
                assert op["security"] == [{"ownerCookie": []}, {"adminToken": []}]


async def test_the_docs_page_shows_bodies_parameters_and_answers(app) -> None:
    client = app.test_client()
    page = await (await client.get("/docs")).get_data(as_text=True)
    text = html_module.unescape(re.sub(r"<[^>]+>", " ", page))
    doc = await _document(app)
    for endpoint in endpoints(doc, "http://127.0.0.1:8000"):
        section = page[page.index(f'id="{endpoint.anchor}"') :]
        section = section[: section.find("</section>")]
        shown = html_module.unescape(re.sub(r"<[^>]+>", " ", section))
        # Answers in order of status, each described.
        statuses = re.findall(r"<dt>([0-9]{3})</dt>", section)
        assert statuses == sorted(statuses) and statuses, endpoint.path
        for param in endpoint.parameters:
            assert param.name in shown and param.description in shown
        if (endpoint.method.lower(), endpoint.path) in BODIES:
            assert endpoint.body is not None and endpoint.body.fields
            assert "Request body" in shown
            for field in endpoint.body.fields:
                assert field.name in shown and field.type in shown
            assert endpoint.body.example and endpoint.body.example.split("\n")[1] in shown
    assert "The job's id, 32 hex digits" in text
    assert "Needs the owner cookie that POST /jobs sets" in text


async def test_examples_name_this_servers_own_figures(jobs_dir: Path) -> None:
    # A catalog without the README's figures still gets examples that work.
    registry = Registry()
    registry.add(FIGURES.get("heatmap"))
    app = create_app({"warm_up": False, "jobs_dir": str(jobs_dir), "registry": registry})
    async with app.test_app():
        doc = await _document(app)
        body = doc["paths"]["/api/render"]["post"]["requestBody"]["content"]
        example = body["application/json"]["example"]
        assert example["figure"] == "heatmap"
        resp = await app.test_client().post("/api/render", json=example)
        assert resp.status_code == 200
