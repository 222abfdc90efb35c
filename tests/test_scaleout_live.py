"""Scale-out mode with real servers only: Redis, two figserve instances (each with a jobs folder
of its own, no shared disk), a standalone job worker and nginx in front, all on 127.0.0.1.

Renders are held in their render process by gated test figures, so every check waits on a
condition (a render begun, a job ended), never on time. The tests that kill a process run last
in the module, as they leave the layout smaller.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from tests.support.cluster import Cluster, JobWorker, cluster, kill_instance, scaleout_env
from tests.support.gates import Gate
from tests.support.html import parse
from tests.support.live import ROOT, LiveServer, free_port, live_server
from tests.support.prometheus import metric
from tests.support.redis import redis_server
from tests.support.waiting import until_sync

pytestmark = pytest.mark.live

WAIT = 60.0  # a deadline for conditions, never a pause
RECOVERY = 45.0  # heartbeat 2 s + sweep 1 s + SAQ's 5 s abort wait + retry, with room to spare


@pytest.fixture(scope="module")
def scale() -> Iterator[Cluster]:
    with cluster(instances=2, workers=1) as layout:
        yield layout


@pytest.fixture
def clients() -> Iterator[Callable[..., httpx.Client]]:
    """HTTP clients, each with a cookie jar of its own (a browser each); closed at the end."""
    made: list[httpx.Client] = []

    def make(**kwargs: object) -> httpx.Client:
        made.append(httpx.Client(timeout=WAIT, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for client in made:
        client.close()


def _misses(server: LiveServer, figure: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return metric(text, "figserve_render_cache_misses_total", figure=figure)


def _job(client: httpx.Client, url: str) -> dict:
    resp = client.get(url, headers={"Accept": "application/json"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _wait_ended(client: httpx.Client, url: str, timeout: float = WAIT) -> dict:
    seen: dict = {}

    def ended() -> bool:
        seen.update(_job(client, url))
        return seen["state"] not in ("queued", "running")

    until_sync(ended, f"the job at {url} to end", timeout)
    return seen


def _saq_records(scale: Cluster, job_id: str) -> str:
    """What SAQ holds of a job's tasks: shown when a job did not end in time."""
    lines = []
    for key in scale.redis.command("KEYS", f"saq:job:*{job_id}*").split(b"\r\n")[2::2]:
        lines.append(scale.redis.command("GET", key.decode()).decode(errors="replace"))
    return "\n".join(lines)


def _ended(scale: Cluster, client: httpx.Client, url: str, timeout: float = WAIT) -> dict:
    try:
        return _wait_ended(client, url, timeout)
    except AssertionError as exc:
        logs = "\n".join(s.output[-4000:] for s in scale.instances)
        logs += "\n".join(w.output[-4000:] for w in scale.workers)
        records = _saq_records(scale, url.rsplit("/", 1)[1])
        raise AssertionError(f"{exc}\n{records}\n{logs}") from None


def _gated_items(gate: Gate, prefix: str, count: int) -> list[dict]:
    return [
        {"figure": "gated", "params": gate.params(f"{prefix}{i}"), "w": 100, "h": 80}
        for i in range(count)
    ]


def _pages(data: bytes) -> int:
    return len(PdfReader(io.BytesIO(data)).pages)


def test_a_seeded_image_is_drawn_once_across_instances(scale: Cluster, gate: Gate) -> None:
    a, b = scale.instances
    path = f"/figures/gated.png?{gate.query('once')}&w=120&h=90"
    before = _misses(a, "gated") + _misses(b, "gated")
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(httpx.get, s.url + path, timeout=WAIT) for s in (a, b) * 3]
        # Every request has missed its instance's own cache and waits: on a render in flight
        # in its instance, or on the other instance's, through Redis.
        until_sync(
            lambda: _misses(a, "gated") + _misses(b, "gated") - before >= 6,
            "all six requests to wait",
            WAIT,
        )
        until_sync(lambda: gate.started(), "the render to begin", WAIT)
        gate.open()
        answers = [f.result() for f in futures]
    assert [r.status_code for r in answers] == [200] * 6
    assert len({r.content for r in answers}) == 1
    assert gate.started() == ["once"]  # drawn once, for both instances
    sources = [r.headers["X-Render-Cache"] for r in answers]
    assert sources.count("miss") == 1 and "redis" in sources, sources
    assert set(sources) <= {"miss", "shared", "redis"}


def test_an_image_drawn_on_one_instance_is_a_hit_on_the_other(scale: Cluster) -> None:
    a, b = scale.instances
    path = "/figures/waves.png?frequency=7&w=90&h=70"
    first = httpx.get(a.url + path, timeout=WAIT)
    second = httpx.get(b.url + path, timeout=WAIT)
    assert first.headers["X-Render-Cache"] == "miss"
    assert second.headers["X-Render-Cache"] == "redis"
    assert first.content == second.content
    assert httpx.get(b.url + path, timeout=WAIT).headers["X-Render-Cache"] == "hit"


def test_nginx_keeps_version_pinned_images_only(scale: Cluster) -> None:
    page = httpx.get(scale.url + "/gallery/histogram?seed=5&w=90&h=70", timeout=WAIT).text
    pinned = scale.url + parse(page).images[0]["src"]
    assert "_v=" in pinned
    assert httpx.get(pinned, timeout=WAIT).headers["X-Cache-Status"] == "MISS"
    again = httpx.get(pinned, timeout=WAIT)
    assert again.headers["X-Cache-Status"] == "HIT"
    assert again.headers["Cache-Control"].startswith("public")
    # A plain URL's bytes may change (an upgrade, new data): each request reaches an instance
    # (a 304 while unchanged), and so does every unseeded one.
    for path in ("/figures/histogram.png?seed=5&w=90&h=70", "/figures/histogram.png?w=90&h=70"):
        statuses = [httpx.get(scale.url + path, timeout=WAIT).headers["X-Cache-Status"]]
        statuses.append(httpx.get(scale.url + path, timeout=WAIT).headers["X-Cache-Status"])
        assert "HIT" not in statuses, path
    # Bodies over FIGSERVE_MAX_BODY_BYTES stop at nginx.
    big = httpx.post(scale.url + "/api/render", content=b"x" * (3 << 20), timeout=WAIT)
    assert big.status_code == 413


def test_a_job_through_nginx_is_drawn_on_several_processes(
    scale: Cluster, clients: Callable[..., httpx.Client], gate: Gate
) -> None:
    owner = clients(base_url=scale.url)
    resp = owner.post("/jobs", json={"items": _gated_items(gate, "j", 6), "output": "pdf"})
    assert resp.status_code == 202, resp.text
    url = resp.headers["Location"]
    # Items render at once on the instances' and the worker's render processes.
    until_sync(lambda: len(gate.pids()) >= 2, "items to begin on two processes", WAIT)
    gate.open()
    job = _ended(scale, owner, url)
    assert job["state"] == "done", job
    assert len(gate.pids()) >= 2
    for server in scale.instances:  # every instance answers for it, without a shared disk
        assert _job(owner, server.url + url)["state"] == "done"
        result = owner.get(server.url + url + "/result")
        assert result.status_code == 200
        assert result.headers["Content-Type"] == "application/pdf"
        assert int(result.headers["Content-Length"]) == len(result.content) == job["result_bytes"]
        assert _pages(result.content) == 6
    part = owner.get(url + "/result", headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == b"%PDF-1.4"[:8]
    for jobs_dir in scale.jobs_dirs:  # nothing of it on any instance's disk
        assert not list(jobs_dir.rglob("*.pdf"))


def test_a_job_is_private_on_every_instance(
    scale: Cluster, clients: Callable[..., httpx.Client]
) -> None:
    owner = clients()
    stranger = clients()
    a, b = scale.instances
    resp = owner.post(a.url + "/jobs", json={"items": [{"figure": "waves"}], "output": "zip"})
    assert resp.status_code == 202
    url = resp.headers["Location"]
    _wait_ended(owner, b.url + url)
    for base in (a.url, b.url, scale.url):
        for method, suffix in [("GET", ""), ("GET", "/result"), ("DELETE", "")]:
            theirs = stranger.request(method, base + url + suffix)
            assert theirs.status_code == 404, (base, method, suffix)
        assert stranger.get(base + "/jobs", headers={"Accept": "application/json"}).json() == {
            "jobs": []
        }
        listed = owner.get(base + "/jobs", headers={"Accept": "application/json"}).json()
        assert url.rsplit("/", 1)[1] in [j["id"] for j in listed["jobs"]]
    assert owner.get(b.url + url + "/result").status_code == 200


def test_a_job_is_cancelled_through_another_instance(
    scale: Cluster, clients: Callable[..., httpx.Client], gate: Gate
) -> None:
    owner = clients()
    a, b = scale.instances
    resp = owner.post(a.url + "/jobs", json={"items": _gated_items(gate, "c", 3)})
    url = resp.headers["Location"]
    job_id = url.rsplit("/", 1)[1]
    until_sync(lambda: gate.started(), "an item to begin", WAIT)
    cancelled = owner.delete(b.url + url)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    gate.open()
    # The items that were drawing end; none of them brings the job back.
    keys = [f"saq:job:fs-items:item:{job_id}:{i}" for i in range(3)]

    def items_ended() -> bool:
        records = [scale.redis.command("GET", key) for key in keys]
        return all(
            b'"status": "queued"' not in r and b'"status": "active"' not in r for r in records
        )

    until_sync(items_ended, "the job's item tasks to end", WAIT)
    assert _job(owner, a.url + url)["state"] == "cancelled"
    assert owner.get(scale.url + url + "/result").status_code == 409
    assert scale.redis.command("KEYS", f"fs:item:{job_id}:*") == b"*0\r\n"


def test_killing_a_job_worker_mid_item_loses_nothing(
    scale: Cluster, clients: Callable[..., httpx.Client], gate: Gate
) -> None:
    worker = scale.workers[0]
    owner = clients(base_url=scale.url)
    resp = owner.post("/jobs", json={"items": _gated_items(gate, "w", 4), "output": "zip"})
    url = resp.headers["Location"]
    until_sync(lambda: gate.pids() & worker.pids(), "the worker to draw an item", WAIT)
    held = [tag for pid, tag in _started(gate) if pid in worker.pids()]
    worker.kill()
    gate.open()
    job = _ended(scale, owner, url, RECOVERY)
    assert job["state"] == "done", job
    assert job["done"] == 4
    # The item the worker held was drawn again by another process.
    assert all(tags.count(tag) >= 2 for tags in [gate.started()] for tag in held)


def test_killing_an_instance_mid_job_loses_nothing(
    scale: Cluster, clients: Callable[..., httpx.Client], gate: Gate
) -> None:
    b = scale.instances[1]
    owner = clients(base_url=scale.url)
    resp = owner.post("/jobs", json={"items": _gated_items(gate, "i", 4), "output": "pdf"})
    url = resp.headers["Location"]
    until_sync(lambda: gate.pids() & scale.pids_of(b), "instance B to draw an item", WAIT)
    held = [tag for pid, tag in _started(gate) if pid in scale.pids_of(b)]
    kill_instance(b)
    gate.open()
    # nginx stops sending to the dead instance; nobody sees an error.
    for _ in range(6):
        assert owner.get("/healthz").status_code == 200
    job = _ended(scale, owner, url, RECOVERY)
    assert job["state"] == "done", job
    assert _pages(owner.get(url + "/result").content) == 4
    assert all(gate.started().count(tag) >= 2 for tag in held)


def _started(gate: Gate) -> list[tuple[int, str]]:
    return [
        (int(p.name.split("-")[1]), p.name.split("-")[2]) for p in gate.folder.glob("started-*")
    ]


# -- Redis missing or lost -----------------------------------------------------------------


def test_redis_unavailable_at_start_is_a_clear_error(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = scaleout_env(url, FIGSERVE_JOBS_DIR=str(tmp_path))
    server = LiveServer(workers=1, env=env, app="tests.support.app:app")
    try:
        # It stops instead of serving half (Hypercorn's master exits 0 whatever ended it).
        server.proc.wait(timeout=WAIT)
    finally:
        server.stop()
    assert f"cannot reach Redis at FIGSERVE_REDIS_URL={url}" in server.output
    assert "unset it to run embedded" in server.output
    worker = JobWorker(env)
    assert worker.proc.wait(timeout=WAIT) == 1
    worker.stop()
    assert f"cannot reach Redis at FIGSERVE_REDIS_URL={url}" in worker.output


def test_redis_lost_while_serving_degrades_to_rendering_without_it(tmp_path: Path) -> None:
    timeout = 0.3
    with redis_server() as redis:
        env = scaleout_env(
            redis.url,
            FIGSERVE_JOBS_DIR=str(tmp_path),
            FIGSERVE_REDIS_CACHE_TIMEOUT=str(timeout),
        )
        with live_server(workers=1, env=env, app="tests.support.app:app") as server:
            get = lambda seed: httpx.get(  # noqa: E731
                f"{server.url}/figures/histogram.png?seed={seed}&w=80&h=60", timeout=WAIT
            )
            assert get(1).headers["X-Render-Cache"] == "miss"
            redis.pause()  # hung: every call to it would wait for its timeout
            t0 = time.monotonic()
            first = get(2)
            assert first.status_code == 200 and first.headers["X-Render-Cache"] == "miss"
            assert time.monotonic() - t0 < 5
            # The breaker is open: later renders do not wait on Redis at all.
            t0 = time.monotonic()
            assert all(get(seed).status_code == 200 for seed in range(3, 8))
            assert time.monotonic() - t0 < 5 * timeout + 3
            redis.stop()  # gone
            assert [get(seed).status_code for seed in range(8, 12)] == [200] * 4
            jobs = httpx.post(server.url + "/jobs", json={"items": [{"figure": "waves"}]})
            assert jobs.status_code == 503
            assert jobs.headers["Retry-After"]
            assert json.loads(jobs.text)["title"] == "Jobs unavailable"
            assert httpx.get(server.url + "/healthz").status_code == 200
        # No answer was a 500, and figserve logged no error (SAQ's workers log their failed
        # rounds while Redis is away: that is theirs to say).
        assert '" 500 ' not in server.output
        assert "ERROR figserve" not in server.output


def test_the_shipped_nginx_configuration_is_valid() -> None:
    from tests.support.nginx import Nginx

    front = Nginx(["127.0.0.1:1", "127.0.0.1:2"])
    try:
        checked = front.check()
    finally:
        front.stop()
    assert checked.returncode == 0, checked.stderr


def test_the_shipped_prometheus_configuration_scrapes_each_instance() -> None:
    import shutil
    import subprocess

    import yaml

    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    nginx_upstreams = re.findall(
        r"(?m)^\s+server (\S+) ", (ROOT / "deploy" / "nginx.conf").read_text()
    )
    assert targets == nginx_upstreams  # the same instances, scraped one by one
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: prometheus); the YAML was checked")
    checked = subprocess.run(
        [promtool, "check", "config", str(ROOT / "deploy" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
