"""JSON API, uploads and the OpenAPI document (issue 3)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from quart.datastructures import FileStorage

from tests.conftest import decode


async def test_catalog_lists_every_figure_with_its_schema(client, app):
    resp = await client.get("/api/figures")
    assert resp.status_code == 200
    body = await resp.get_json()
    names = [f["name"] for f in body["figures"]]
    assert names == [spec.name for spec in app.extensions["figserve"].registry]
    assert len(names) >= 5
    normal = body["figures"][0]
    assert normal["params"]["properties"]["var"]["exclusiveMinimum"] == 0
    assert set(body["formats"]) == {"png", "svg", "pdf", "webp", "jpeg"}
    # The advertised URLs work.
    assert (await client.get(normal["image_url"])).status_code == 200
    assert (await client.get(normal["page_url"])).status_code == 200


async def test_render_from_a_json_spec(client):
    spec = {"figure": "histogram", "params": {"bins": 10, "seed": 4}, "format": "webp", "w": 300}
    first = await client.post("/api/render", json=spec)
    assert first.status_code == 200
    assert first.content_type == "image/webp"
    assert decode(await first.get_data()).size == (300, 300)
    second = await client.post("/api/render", json=spec)
    assert await first.get_data() == await second.get_data()  # the seed is a param like any other
    same_as_get = await client.get("/figures/histogram.webp?bins=10&seed=4&w=300&h=300")
    assert same_as_get.headers["ETag"] == first.headers["ETag"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"figure": "normal", "params": {"var": 0}}, "params.var"),
        ({"figure": "normal", "params": {"colour": "red"}}, "params.colour"),
        ({"figure": "normal", "format": "gif"}, "format"),
        ({"figure": "normal", "w": 5}, "w"),
        ({"figure": "normal", "extra": 1}, "extra"),
        ({"params": {}}, "figure"),
        ([1, 2], "body"),
        ("not json", "body"),
        (b"\xff\xfe{}", "body"),
    ],
)
async def test_render_errors_name_the_parameter(client, body, param):
    if isinstance(body, str | bytes):
        resp = await client.post(
            "/api/render", data=body, headers={"Content-Type": "application/json"}
        )
    else:
        resp = await client.post("/api/render", json=body)
    assert resp.status_code == 400
    assert resp.content_type == "application/problem+json"
    assert (await resp.get_json())["param"] == param


async def test_render_unknown_figure_is_404(client):
    resp = await client.post("/api/render", json={"figure": "pie"})
    assert resp.status_code == 404
    assert "normal" in (await resp.get_json())["detail"]


async def test_oversized_json_body_is_413(client):
    resp = await client.post(
        "/api/render",
        data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 413


def upload(data: bytes, filename: str = "data.csv") -> dict:
    return {"file": FileStorage(io.BytesIO(data), filename=filename, name="file")}


CSV = b"day,sales,returns\n1,10,1\n2,12,2\n3,9,1\n4,15,3\n"


@pytest.mark.parametrize("kind", ["line", "scatter", "bar", "hist"])
async def test_plot_uploaded_csv(client, kind):
    form = {"kind": kind, "x": "day" if kind != "hist" else "sales", "title": "Sales $x$"}
    if kind != "hist":
        form["y"] = "sales,returns"
    resp = await client.post("/api/plot", form=form, files=upload(CSV))
    assert resp.status_code == 200, await resp.get_data()
    assert resp.content_type == "image/png"
    assert decode(await resp.get_data()).size == (640, 400)


async def test_plot_uploaded_npy_as_svg(client):
    buf = io.BytesIO()
    np.save(buf, np.column_stack([np.arange(50.0), np.sin(np.arange(50.0))]))
    resp = await client.post(
        "/api/plot",
        form={"kind": "line", "x": "0", "y": "1", "format": "svg"},
        files=upload(buf.getvalue(), "wave.npy"),
    )
    assert resp.status_code == 200
    assert resp.content_type.startswith("image/svg+xml")


async def test_bar_chart_with_text_categories(client):
    data = b"fruit,count\napple,3\n$banana$,5\ncherry,2\n"
    resp = await client.post("/api/plot", form={"kind": "bar"}, files=upload(data))
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("data", "form", "param", "fragment"),
    [
        (b"a,b\n1,2\n3\n", {}, "file", "line 3"),
        (b"a,b\n1,2\n3,x\n", {"kind": "line", "x": "a", "y": "b"}, "y", "not numeric"),
        (b'a,b\n1,2\n3,"4\n', {}, "file", "line"),
        (b"a,b\n", {}, "file", "no data rows"),
        (b"\xff\xfe\x00", {}, "file", "UTF-8"),
        (b"a,a\n1,2\n", {}, "file", "unique"),
        (b"a,b\n1,nan\n", {}, "file", "not finite"),
        (CSV, {"x": "month"}, "x", "no column 'month'"),
        (CSV, {"kind": "line", "y": "profit"}, "y", "day, sales, returns"),
        (CSV, {"kind": "hist", "y": "sales"}, "y", "hist"),
        (CSV, {"kind": "pie"}, "kind", ""),
        (CSV, {"title": "t" * 81}, "title", ""),
        (CSV, {"w": "10"}, "w", ""),
        (b"\x93NUMPY garbage", {}, "file", ".npy"),
    ],
)
async def test_unusable_uploads_are_400_naming_the_problem(client, data, form, param, fragment):
    resp = await client.post("/api/plot", form=form, files=upload(data))
    assert resp.status_code == 400, await resp.get_data()
    body = await resp.get_json()
    assert body["param"] == param
    assert fragment in body["detail"]


async def test_upload_limits(client, app):
    settings = app.extensions["figserve"].settings
    too_many_rows = b"a\n" + b"1\n" * (settings.max_upload_rows + 1)
    resp = await client.post("/api/plot", files=upload(too_many_rows))
    assert resp.status_code == 400
    assert "rows" in (await resp.get_json())["detail"]
    header = ",".join(f"c{i}" for i in range(settings.max_upload_columns + 1)).encode()
    resp = await client.post("/api/plot", files=upload(header + b"\n" + b"1," * 50 + b"1\n"))
    assert resp.status_code == 400
    assert "columns" in (await resp.get_json())["detail"]


async def test_oversized_upload_is_413(client, app):
    limit = app.extensions["figserve"].settings.max_body_bytes
    resp = await client.post("/api/plot", files=upload(b"a\n" + b"1\n" * (limit // 2 + 10)))
    assert resp.status_code == 413
    assert resp.content_type == "application/problem+json"


async def test_missing_file_is_400(client):
    boundary = "b0undary"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nline\r\n'
    body += f"--{boundary}--\r\n"
    resp = await client.post(
        "/api/plot",
        data=body.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "file"


async def test_openapi_documents_every_image_and_json_route(client, app):
    schema = await (await client.get("/openapi.json")).get_json()
    paths = schema["paths"]
    for spec in app.extensions["figserve"].registry:
        op = paths[f"/figures/{spec.name}.{{fmt}}"]["get"]
        params = {p["name"] for p in op["parameters"]}
        assert set(spec.params.model_fields) | {"w", "h", "dpr", "dpi", "fmt"} <= params
        assert "image/png" in op["responses"]["200"]["content"]
        assert "application/problem+json" in op["responses"]["400"]["content"]
    assert {"/fig/{mean_var}", "/api/figures", "/api/render", "/api/plot"} <= set(paths)
    assert "requestBody" in paths["/api/render"]["post"]
    fmt = paths["/figures/normal.{fmt}"]["get"]["parameters"][0]
    assert (fmt["name"], fmt["schema"]["enum"]) == ("fmt", ["png", "svg", "pdf", "webp", "jpeg"])


async def test_docs_page_lists_the_routes(client):
    resp = await client.get("/docs")
    assert resp.status_code == 200
    html = await resp.get_data(as_text=True)
    assert "/figures/histogram.{fmt}" in html and "/api/plot" in html


async def test_a_whole_number_written_as_a_float_is_an_integer(client):
    # JSON Schema's integer: 136.0 is 136. The same image, the same ETag.
    spec = {"figure": "histogram", "params": {"bins": 136, "seed": 4}, "w": 300}
    plain = await client.post("/api/render", json=spec)
    floats = {"figure": "histogram", "params": {"bins": 136.0, "seed": 4.0}, "w": 300.0}
    written = await client.post("/api/render", json=floats)
    assert (plain.status_code, written.status_code) == (200, 200)
    assert written.headers["ETag"] == plain.headers["ETag"]
    for wrong in (136.5, True, "136"):
        resp = await client.post(
            "/api/render", json={"figure": "histogram", "params": {"bins": wrong}}
        )
        assert resp.status_code == 400
        assert (await resp.get_json())["param"] == "params.bins"
