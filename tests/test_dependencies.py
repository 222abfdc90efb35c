"""What figserve assumes of the libraries it builds on, each checked on its own, so an upgrade
that changes it fails here, loudly, instead of quietly in production. ``pyproject.toml`` bounds
these libraries to the versions these tests passed with; raise a bound only with them green.

- Quart: an exception raised by the ASGI ``receive`` of a request ends it and leaves
  ``asgi_app`` (the body deadline and the body limit of ``web/asgi.py``); ``while_serving`` runs
  a service's start before serving and its stop after (``app.py``); a ``ResponseBody`` streams a
  download (``web/downloads.py``).
- prometheus-client: metrics made after ``values.ValueClass`` is set to ``MultiProcessValue`` go
  to files in ``PROMETHEUS_MULTIPROC_DIR``, which ``MultiProcessCollector`` sums (``metrics.py``).
- Werkzeug: ``MultiPartParser`` refuses more parts than ``max_form_parts`` (``web/body.py``).
- Hypercorn: its master stops every worker gracefully on SIGTERM while a worker ignores its own
  (``services.py``; tested live in ``test_app_live.py``).
- SAQ: a ``Worker`` keeps its asyncio tasks in ``tasks`` (the one running jobs named
  ``process``), stops taking jobs when ``event`` is set, and handles the ``SIGNALS`` it lists
  (``jobs/queue.py`` stops its upkeep loops at once and leaves signals to figserve).
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from quart import Quart, Response
from quart.wrappers.response import ResponseBody
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import MultiPartParser

from tests.support.live import ROOT

# Hypercorn's stop of its workers is tested live (tests/test_app_live.py).
BOUNDED = ["quart", "werkzeug", "hypercorn", "prometheus-client", "saq", "redis"]


def declared() -> dict[str, SpecifierSet]:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["scale"]
    requirements = [Requirement(line) for line in lines]
    return {r.name.lower(): r.specifier for r in requirements}


@pytest.mark.parametrize("name", BOUNDED)
def test_each_library_whose_behaviour_figserve_assumes_is_bounded(name: str) -> None:
    specifier = declared()[name]
    assert any(s.operator in {"<", "<=", "=="} for s in specifier), f"{name} has no upper bound"
    assert version(name) in specifier


async def test_quart_an_error_raised_by_receive_ends_the_request_and_leaves_the_app() -> None:
    app = Quart(__name__)
    reached = asyncio.Event()
    cancelled = asyncio.Event()

    class Stop(Exception):
        pass

    @app.post("/body")
    async def body() -> str:
        from quart import request

        reached.set()
        try:
            await request.get_data()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "read"

    sent: list[dict] = []
    first = True

    async def receive() -> dict:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"x", "more_body": True}
        await reached.wait()
        raise Stop

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/body",
        "raw_path": b"/body",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"x"), (b"content-type", b"text/plain")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "extensions": {},
    }
    with pytest.raises(Stop):
        async with asyncio.timeout(10):
            await app.asgi_app(scope, receive, send)
    assert cancelled.is_set()  # the handler was cancelled, not left running
    assert not [m for m in sent if m["type"] == "http.response.start"]


async def test_quart_while_serving_starts_before_serving_and_stops_after() -> None:
    app = Quart(__name__)
    events: list[str] = []

    @app.while_serving
    async def service():
        events.append("start")
        yield
        events.append("stop")

    @app.get("/")
    async def index() -> str:
        events.append("request")
        return "ok"

    async with app.test_app():
        assert events == ["start"]
        await app.test_client().get("/")
    assert events == ["start", "request", "stop"]


async def test_quart_streams_a_response_body_in_pieces() -> None:
    class Pieces(ResponseBody):
        async def __aenter__(self):
            async def pieces():
                for piece in (b"a", b"bc", b"def"):
                    yield piece

            return pieces()

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def make_conditional(self, begin: int, end: int | None) -> int:
            raise NotImplementedError

    app = Quart(__name__)

    @app.get("/")
    async def index() -> Response:
        return Response(Pieces(), mimetype="application/octet-stream")

    resp = await app.test_client().get("/")
    assert await resp.get_data() == b"abcdef"


def test_prometheus_client_sums_values_written_by_several_processes(tmp_path: Path) -> None:
    # Each process as a serving worker starts its metrics: figserve's Metrics.start().
    worker = textwrap.dedent(
        """
        from figserve.metrics import Metrics
        from figserve.render import job_for, ImageOptions
        from figserve.figures import FIGURES
        metrics = Metrics.start()
        spec = FIGURES.get("waves")
        job = job_for(spec, spec.params(), ImageOptions(w=100, h=75), 10**6)
        metrics.count("finished", job)
        metrics.queued(1)
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, cwd=ROOT)
    assert len(list(tmp_path.glob("*.db"))) >= 3  # one file per process and kind
    reader = textwrap.dedent(
        f"""
        from figserve.metrics import Metrics
        print(Metrics({str(tmp_path)!r}).exposition().decode())
        """
    )
    text = subprocess.run(
        [sys.executable, "-c", reader],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert 'figserve_renders_finished_total{figure="waves",format="png"} 3.0' in text
    assert "figserve_render_queue_depth 3.0" in text


def test_werkzeug_refuses_more_form_parts_than_allowed() -> None:
    parts = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(10)
    )
    body = parts + b"--b--\r\n"
    parser = MultiPartParser(max_form_parts=5, max_form_memory_size=1024, buffer_size=256)
    with pytest.raises(RequestEntityTooLarge):
        parser.parse(io.BytesIO(body), b"b", len(body))
    form, _ = MultiPartParser(max_form_parts=20, buffer_size=256).parse(
        io.BytesIO(body), b"b", len(body)
    )
    assert len(form) == 10


async def test_saq_workers_keep_their_tasks_and_signals_where_figserve_reaches_them() -> None:
    from saq import Worker
    from saq.queue.redis import RedisQueue

    assert Worker.SIGNALS  # what figserve empties, so a worker leaves signals to its process
    worker = Worker(RedisQueue.__new__(RedisQueue), [("noop", lambda ctx: None)])
    assert isinstance(worker.event, asyncio.Event)
    assert worker.tasks == set()
    import inspect

    assert 'name="process"' in inspect.getsource(Worker)
