"""``python -m figserve serve``, ``check`` and ``worker`` as real processes: a failed start is a
failure (status, one message last), workers are supervised, and a stop ends every process
(workers, fork servers, render processes) by the grace time plus a margin, whatever hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from figserve.launch.master import STOP_MARGIN
from tests.support.live import ROOT, LiveServer, free_port
from tests.support.procs import alive, group_pids
from tests.support.waiting import until_sync

pytestmark = pytest.mark.live

GRACE = 2.0  # --graceful-timeout of these servers, seconds
SLACK = 5.0  # what a loaded machine may add to a deadline before a test calls it late


def figserve(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "figserve", *args],
        cwd=cwd,
        env={**_clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FIGSERVE_")}


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# -- a start that fails ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "status", "message"),
    [
        ({"FIGSERVE_FIGURES": "nosuchmod"}, 2, "FIGSERVE_FIGURES: no module 'nosuchmod'"),
        ({"FIGSERVE_RENDER_TIMEOUT": "abc"}, 2, "FIGSERVE_RENDER_TIMEOUT='abc': Input should be"),
        ({"FIGSERVE_PAGES": "/nonexistent/pages"}, 2, "FIGSERVE_PAGES='/nonexistent/pages'"),
        (
            {"FIGSERVE_REDIS_URL": "redis://127.0.0.1:{port}/0"},
            1,
            "cannot reach Redis at FIGSERVE_REDIS_URL=redis://127.0.0.1:",
        ),
    ],
)
def test_a_failed_start_exits_non_zero_with_its_message_last(
    env: dict[str, str], status: int, message: str
) -> None:
    env = {k: v.replace("{port}", str(free_port())) for k, v in env.items()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "figserve", "serve", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env={**_clean_env(), **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert _last_line(err).startswith(f"figserve: the start failed: {message}"), err
    assert "Traceback" not in err
    assert group_pids(proc.pid) == set()  # nothing left running


def test_a_template_that_does_not_compile_fails_the_start(tmp_path: Path) -> None:
    (tmp_path / "broken.html").write_text("<p>\n{% for x in %}")
    done = figserve(
        "serve", "--bind", f"127.0.0.1:{free_port()}", env={"FIGSERVE_PAGES": str(tmp_path)}
    )
    assert done.returncode == 2
    assert _last_line(done.stderr) == (
        "figserve: the start failed: FIGSERVE_PAGES: broken.html, line 2: Expected an "
        "expression, got 'end of statement block'"
    )


def test_an_address_in_use_fails_the_start() -> None:
    server = LiveServer(env={"FIGSERVE_WARM_UP": "false"}, launcher=True).start()
    try:
        done = figserve("serve", "--bind", f"127.0.0.1:{server.port}")
        assert done.returncode == 1
        assert _last_line(done.stderr).startswith(
            f"figserve: the start failed: cannot listen on 127.0.0.1:{server.port}:"
        )
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "graceful_timout = 3\n",
            "'graceful_timout' is not a Hypercorn setting (did you mean 'graceful_timeout'?)",
        ),
        ("workers = 0\n", "workers = 0: must be a whole number, 1 or more"),
        ("workers = '2'\n", "workers = '2': must be a number"),
        ("worker_class = 'trio'\n", "worker_class = 'trio': figserve runs on asyncio"),
        ("access_log_format = '%(h'\n", "access_log_format = '%(h': incomplete format"),
        ("bind = [\n", "Invalid value (at end of document)"),
    ],
)
def test_a_wrong_hypercorn_toml_stops_serve_and_check(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "hypercorn.toml"
    config.write_text(toml)
    for command in ("serve", "check"):
        done = figserve(command, "--config", str(config))
        assert done.returncode == 2, done.stderr
        assert str(config) in done.stderr and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_check_passes_the_shipped_configuration_and_fails_a_broken_one(tmp_path: Path) -> None:
    ok = figserve("check")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("figserve check: ok: 5 figures (normal, histogram,")
    (tmp_path / "badalt.py").write_text(
        "from pydantic import Field\n"
        "from figserve import FIGURES, FigureParams\n"
        "class P(FigureParams):\n"
        "    label: str | None = Field(None, max_length=9)\n"
        "@FIGURES.figure('badalt', title='t', description='d', alt='{label:>5}', params=P)\n"
        "def badalt(fig, p):\n"
        "    pass\n"
    )
    bad = figserve(
        "check",
        "--config",
        str(ROOT / "hypercorn.toml"),
        cwd=tmp_path,
        env={"FIGSERVE_FIGURES": "badalt"},
    )
    assert bad.returncode == 2
    assert _last_line(bad.stderr).startswith("figserve check: FIGSERVE_FIGURES: module 'badalt'")
    assert "alt text '{label:>5}' fails for label=None" in bad.stderr


def test_the_worker_command_is_the_job_worker() -> None:
    done = figserve("worker")
    assert done.returncode == 2
    assert "FIGSERVE_REDIS_URL is not set" in done.stderr


# -- serving, supervised -----------------------------------------------------------------------


def test_a_stop_ends_every_process_within_the_grace_time() -> None:
    server = LiveServer(
        workers=2,
        env={"FIGSERVE_RENDER_PROCESSES": "2"},
        launcher=True,
        args=("--graceful-timeout", str(GRACE)),
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/figures/waves.png").status_code == 200
        everyone = group_pids(server.proc.pid) | _worker_groups(server)
        assert len(everyone) >= 1 + 2 * 4  # master, 2 x (worker, fork server, 2 renderers)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < GRACE + STOP_MARGIN + SLACK
        assert not any(alive(pid) for pid in everyone)
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL, group=True)


def _worker_groups(server: LiveServer) -> set[int]:
    """Every process of every worker's process group (each worker leads its own)."""
    return {pid for worker in server.worker_pids() for pid in group_pids(worker)}


def test_a_wedged_worker_is_killed_with_its_render_processes_by_the_deadline() -> None:
    server = LiveServer(
        app="tests.support.stuck:app", launcher=True, args=("--graceful-timeout", str(GRACE))
    ).start()
    try:
        everyone = group_pids(server.proc.pid) | _worker_groups(server)
        assert len(everyone) >= 4  # master, worker, fork server, a render process
        started = time.monotonic()
        status = server.stop(timeout=GRACE + STOP_MARGIN + 60)
        took = time.monotonic() - started
        assert status == 1  # stopped, but only by force: said so
        assert GRACE < took < GRACE + STOP_MARGIN + SLACK
        assert not any(alive(pid) for pid in everyone)
        assert "killing it and its render processes" in server.output
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL, group=True)


def test_workers_stop_by_themselves_when_their_master_is_killed() -> None:
    server = LiveServer(launcher=True, args=("--graceful-timeout", str(GRACE))).start()
    workers = _worker_groups(server)
    try:
        assert len(workers) >= 3  # a worker, its fork server, a render process
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        until_sync(
            lambda: not any(alive(pid) for pid in workers),
            "the orphaned workers and their render processes to end",
            timeout=GRACE + STOP_MARGIN + SLACK,
        )
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_dead_worker_is_replaced_and_a_second_signal_kills_at_once() -> None:
    server = LiveServer(launcher=True, args=("--graceful-timeout", "30")).start()
    try:
        (first,) = server.worker_pids()
        os.kill(first, signal.SIGKILL)
        server.wait_for("Running on", count=2)
        (second,) = server.worker_pids()
        assert second != first
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
        everyone = group_pids(server.proc.pid) | _worker_groups(server)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for("stopping 1 worker", timeout=30)
        server.proc.send_signal(signal.SIGTERM)  # an operator who will not wait 30 s
        assert server.proc.wait(timeout=60) == 1
        assert time.monotonic() - started < SLACK + 5
        assert not any(alive(pid) for pid in everyone)
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL, group=True)
