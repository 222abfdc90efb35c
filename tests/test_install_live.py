"""``pip install .`` (not editable), then ``hypercorn 'figserve.app:create_app()'`` from another
folder serves
every kind of page: templates and static files travel in the package."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

from tests.support.live import ROOT, live_server

pytestmark = pytest.mark.live
COPIED = ["src", "templates", "pyproject.toml", "README.md"]


def fetch(url: str, accept: str = "*/*") -> tuple[int, str, bytes]:
    with urlopen(Request(url, headers={"Accept": accept}), timeout=30) as resp:
        return resp.status, resp.headers.get_content_type(), resp.read()


def test_a_plain_install_serves_every_page(tmp_path: Path) -> None:
    # A copy of the sources, so building leaves nothing in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The dependencies are the test environment's (found through a path file, which does not
    # bring along its editable figserve); figserve itself is built and installed for real.
    packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(packages, "test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            str(source),
        ],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import figserve.app; print(figserve.app.__file__)"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(packages), where  # the installed package, not the checkout
    shell = f"{python} -m hypercorn --bind 127.0.0.1:{{port}} 'figserve.app:create_app()'"
    env = {"FIGSERVE_JOBS_DIR": str(tmp_path / "jobs"), "FIGSERVE_WARM_UP": "false"}
    with live_server(shell=shell, workers=1, env=env, cwd=elsewhere) as server:
        html = {}
        for path in ("/", "/gallery/waves", "/normal/5_3", "/docs", "/jobs"):
            status, kind, body = fetch(server.url + path, "text/html")
            assert (status, kind) == (200, "text/html"), path
            html[path] = body.decode()
        # The stylesheet travels too: in each page, and at its own URL.
        assert all("--accent" in page for page in html.values())
        status, kind, body = fetch(server.url + "/static/style.css")
        assert (status, kind) == (200, "text/css") and b"--accent" in body
        status, kind, body = fetch(server.url + "/static/jobs.js")
        assert (status, kind) == (200, "text/javascript")
        status, kind, body = fetch(server.url + "/figures/waves.png?w=200&h=150", "image/*")
        assert (status, kind) == (200, "image/png") and body[:4] == b"\x89PNG"
    # The console script: figserve's own master, from a folder without hypercorn.toml (its
    # defaults), and its check.
    figserve = venv / "bin" / "figserve"
    check = subprocess.run(
        [str(figserve), "check"],
        cwd=elsewhere,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and "figserve check: ok: 5 figures" in check.stdout, check
    assert "no hypercorn.toml in" in check.stdout
    shell = f"{figserve} serve --bind 127.0.0.1:{{port}}"
    with live_server(shell=shell, workers=1, env=env, cwd=elsewhere) as server:
        status, kind, _ = fetch(server.url + "/", "text/html")
        assert (status, kind) == (200, "text/html")
