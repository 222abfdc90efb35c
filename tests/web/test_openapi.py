"""The OpenAPI document tells the truth: Schemathesis, every check, against a real server.

Positive data (anything the document allows) must be accepted, negative data (anything it
forbids) refused, every answer documented with its status, media type and body schema, and
the server never fails. The run is bounded in time and seeded, so it is the same run each time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from figserve.web.owner import COOKIE, new_token
from tests.support.live import ROOT, live_server

pytestmark = pytest.mark.live
HERE = Path(__file__).resolve().parent
MAX_TIME = 35  # seconds of generated requests (the suite stays within its 10 minutes)
SECRET = "a secret that signs the owner cookies of this run"


def test_every_check_passes_against_the_document(tmp_path: Path) -> None:
    env = {
        "FIGSERVE_JOBS_DIR": str(tmp_path / "jobs"),
        "FIGSERVE_WARM_UP": "false",
        # Jobs are queued and never run (no job threads): room for every generated one, and
        # no report drawing beside the generated requests.
        "FIGSERVE_JOB_THREADS": "0",
        "FIGSERVE_JOB_MAX_ACTIVE": "100000",
        "FIGSERVE_JOB_MAX_CLIENT_ACTIVE": "100000",
        "FIGSERVE_JOB_MAX_OUTPUT_BYTES": "1024",
        "FIGSERVE_OWNER_SECRET": SECRET,
    }
    with live_server(workers=1, env=env) as server:
        proc = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{server.url}/openapi.json",
                "--mode",
                "all",
                "--seed",
                "20261122",
                "--max-time",
                str(MAX_TIME),
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--request-timeout",
                "30",
                # A client that keeps its owner cookie, as a browser does: the jobs it starts
                # are its own to read and delete (the stateful phase follows them).
                "--header",
                f"Cookie: {COOKIE}={new_token(SECRET.encode())}",
            ],
            cwd=tmp_path,
            env={
                **os.environ,
                **env,
                "SCHEMATHESIS_HOOKS": "tests.support.contract_hooks",
                "PYTHONPATH": str(ROOT),
            },
            capture_output=True,
            text=True,
            timeout=MAX_TIME + 120,
        )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-20000:]
    assert "No issues found" in report or " passed" in report, report[-5000:]
