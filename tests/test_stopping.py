"""A stopping worker's watchdog, in processes of its own (it kills what it runs in)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.procs import alive
from tests.support.waiting import until_sync

WEDGED = """
import subprocess, sys, time, threading
from figserve import stopping
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
stopping.arm(0.5, "not enabled: nothing happens")
time.sleep(1.0)
stopping.enable()
stopping.arm(60, "a later deadline")
stopping.arm(0.5, "a stop began")  # the earlier deadline wins
time.sleep(600)  # wedged
"""


@pytest.mark.parametrize("own_group", [True, False])
def test_an_armed_watchdog_kills_the_worker_and_its_processes(own_group: bool) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WEDGED],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,  # as figserve's master starts workers, or not (Hypercorn)
    )
    with proc:
        child = int(proc.stdout.readline())
        started = time.monotonic()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -9
    assert 1.0 < time.monotonic() - started < 10
    until_sync(lambda: not alive(child), "its child to be killed too", timeout=5)
    assert "a stop began, and it still runs 0.5 s later: killing it" in err


NESTED = """
import threading
from figserve import stopping
stopping.enable()
start = threading.Timer.start
def start_then_signal(timer):
    start(timer)
    timer.start = lambda: None
    stopping.arm(120, "a second SIGTERM, handled inside the first")  # re-entered
threading.Timer.start = start_then_signal
stopping.arm(100, "a first SIGTERM")
print("not wedged", flush=True)
"""


def test_a_signal_arriving_while_arming_does_not_wedge_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NESTED)], capture_output=True, text=True, timeout=30
    )
    assert done.stdout == "not wedged\n", done.stderr


def test_the_grace_time_is_read_from_hypercorns_command_line(tmp_path) -> None:
    from figserve.stopping import graceful_timeout

    config = tmp_path / "server.toml"
    config.write_text("graceful_timeout = 12\n")
    hypercorn = "/venv/bin/hypercorn"
    assert graceful_timeout([hypercorn, "--config", str(config), "src.app:app"]) == 12
    assert graceful_timeout([hypercorn, f"--config={config}", "--graceful-timeout", "4"]) == 4
    assert graceful_timeout([hypercorn, "--graceful-timeout=2.5", "a:b"]) == 2.5
    assert graceful_timeout([hypercorn, "-c", str(tmp_path / "missing.toml")]) == 3.0
    assert graceful_timeout([hypercorn, "src.app:app"]) == 3.0  # Hypercorn's own default
