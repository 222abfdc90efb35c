"""A server abused over h2c (streams never read, rapid resets, floods), then stopped: every
process of it is gone by the grace time and a margin, whatever state the abuse left it in."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from figserve import stopping
from figserve.launch.master import STOP_MARGIN
from tests.support.h2abuse import abuse
from tests.support.live import LiveServer
from tests.support.procs import alive, group_pids
from tests.support.waiting import until_sync

pytestmark = pytest.mark.live

ABUSE_SECONDS = 8.0
GRACE = 3.0
SLACK = 5.0  # what a loaded machine may add to a deadline


def _everyone(server: LiveServer) -> set[int]:
    pids = group_pids(server.proc.pid)
    for worker in server.worker_pids():
        pids |= group_pids(worker)
    return pids


def _stop_after_abuse(server: LiveServer, group: bool, deadline: float) -> float:
    """Abuse, stop; the seconds until every process of the server was gone."""
    held = abuse(server.port, ABUSE_SECONDS)
    try:
        everyone = _everyone(server)
        assert len(everyone) >= 4  # master, worker, fork server, render processes
        started = time.monotonic()
        if group:
            os.killpg(server.proc.pid, signal.SIGTERM)
        else:
            server.proc.send_signal(signal.SIGTERM)
        until_sync(lambda: not any(alive(p) for p in everyone), "every process to end", deadline)
        return time.monotonic() - started
    finally:
        for sock in held:
            sock.close()


def test_figserves_master_ends_every_process_of_an_abused_server_by_its_deadline() -> None:
    server = LiveServer(
        launcher=True,
        env={"FIGSERVE_RENDER_PROCESSES": "2"},
        args=("--graceful-timeout", str(GRACE)),
    ).start()
    try:
        _stop_after_abuse(server, group=False, deadline=GRACE + STOP_MARGIN + SLACK)
        assert server.proc.wait(timeout=10) in {0, 1}  # 1: some process had to be killed
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL, group=True)


def test_under_hypercorn_a_stopping_worker_ends_itself_by_its_deadline(tmp_path: Path) -> None:
    # Hypercorn's own master, stopped as systemd stops a unit (SIGTERM to every process): each
    # worker arms its own deadline from the graceful_timeout of the master's --config file.
    (tmp_path / "hypercorn.toml").write_text(f"graceful_timeout = {GRACE}\naccesslog = '-'\n")
    server = LiveServer(
        app="figserve.app:create_app()",
        cwd=tmp_path,
        env={"FIGSERVE_RENDER_PROCESSES": "2"},
    ).start()
    try:
        _stop_after_abuse(server, group=True, deadline=GRACE + stopping.MARGIN + SLACK)
    finally:
        if server.proc.poll() is None:
            server.stop(signal.SIGKILL, group=True)
