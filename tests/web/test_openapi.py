"""The OpenAPI document, held to by the app: schemathesis generates requests from it."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from src.app import create_app
from src.web.params import format_number


def _valid_paths_too(context, path_parameters: dict | None) -> st.SearchStrategy:
    """The document types ``fmt`` and ``mean_var`` as plain strings; half of the generated
    paths use real formats and numbers, so renders run too, not only 404s."""
    if not path_parameters:
        return st.just(path_parameters)
    if "fmt" in path_parameters:
        fmt = st.sampled_from(["png", "svg", "pdf", "webp", "jpeg"])
        return st.one_of(fmt.map(lambda f: {**path_parameters, "fmt": f}), st.just(path_parameters))
    if "mean_var" in path_parameters:
        number = st.floats(-1e7, 1e7, allow_nan=False).map(format_number)
        pairs = st.tuples(number, number).map(lambda t: {"mean_var": f"{t[0]}_{t[1]}"})
        return st.one_of(pairs, st.just(path_parameters))
    return st.just(path_parameters)


def _load_schema() -> tuple[object, Path]:
    """The app's own document, read without starting the app: schemathesis starts serving
    (runs its lifespan) at the first generated request, not while tests are being collected."""
    jobs = Path(tempfile.gettempdir()) / f"figserve-fuzz-jobs-{os.getpid()}"
    app = create_app({"warm_up": False, "jobs_dir": str(jobs), "render_timeout": 30.0})

    async def document() -> dict:
        return await (await app.test_client().get("/openapi.json")).get_json()

    loaded = schemathesis.openapi.from_dict(asyncio.run(document()))
    loaded.app = app
    loaded.location = "/openapi.json"
    loaded.hook("flatmap_path_parameters")(_valid_paths_too)
    return loaded, jobs


schema, JOBS_DIR = _load_schema()


@pytest.fixture(scope="module", autouse=True)
def _stop_serving() -> Iterator[None]:
    yield
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # the app's after_serving: pools closed before the module ends
    shutil.rmtree(JOBS_DIR, ignore_errors=True)


# Matplotlib warns (it does not fail) on glyphs its font lacks and on layouts too small to
# apply; the suite turns warnings into errors, which here would read as server errors.
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
@pytest.mark.filterwarnings("ignore:constrained_layout not applied")
@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_every_generated_request_within_its_schema(case) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
