"""Lighthouse scores of every public page: ``.venv/bin/python -m bench.lighthouse [--runs 3]``.

Installs npm's ``lighthouse`` (once, into ``~/.cache/figserve/lighthouse``, never into the
repository; Node 20 and npm must be there), starts the shipped server with the examples'
figures and page on a free 127.0.0.1 port, warms its image cache once with each page as a phone
and a desktop see it (steady state: seeded images are drawn once), then runs Lighthouse on each
page, mobile and desktop, ``--runs`` times with Debian's Chromium, and writes the median score of
each category to ``bench/results/lighthouse.md`` (``--out`` to change). Error pages and private
job pages say ``noindex`` instead of competing: Lighthouse refuses to score a 4xx page, and a
job page's SEO score counts its ``noindex`` against it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import Request, urlopen

from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.support.live import ROOT, live_server

VERSION = "13"
TOOLS = Path.home() / ".cache" / "figserve" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
PAGES = ("/", "/normal/5_3", "/gallery/waves", "/gallery/histogram?bins=12&seed=3", "/docs")
PAGES += ("/jobs", "/pages/spirals")


def lighthouse() -> Path:
    binary = TOOLS / "node_modules" / ".bin" / "lighthouse"
    if not binary.exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(TOOLS), "--no-fund", "--no-audit",
             f"lighthouse@{VERSION}"],
            check=True,
            timeout=600,
        )  # fmt: skip
    return binary


def _warm(url: str, job: str) -> None:
    """Each page once as Lighthouse's phone (density 1.75) and desktop (1) load it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for width, density in ((412, 1.75), (1350, 1)):
            context = browser.new_context(
                viewport={"width": width, "height": 900}, device_scale_factor=density
            )
            page = context.new_page()
            for path in (*PAGES, job):
                page.goto(url + path, wait_until="load")
            context.close()
        browser.close()


def _job(url: str) -> tuple[str, str]:
    """A report of a client of its own: its page, and the cookie that may see it."""
    body = json.dumps({"output": "zip", "items": [{"figure": "waves", "format": "svg"}]})
    request = Request(
        url + "/jobs", body.encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urlopen(request, timeout=30) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        return json.loads(resp.read())["url"], cookie


def _run(binary: Path, url: str, desktop: bool, cookie: str, out: Path) -> dict[str, float]:
    command = [
        str(binary),
        url,
        "--quiet",
        "--output=json",
        f"--output-path={out}",
        f"--chrome-flags={' '.join(CHROMIUM_FLAGS)}",
        f"--extra-headers={json.dumps({'Cookie': cookie})}",
    ]
    if desktop:
        command.append("--preset=desktop")
    subprocess.run(
        command,
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        check=False,
        timeout=240,
        capture_output=True,
    )
    report = json.loads(out.read_text())
    if report.get("runtimeError"):
        return {}
    return {c: report["categories"][c]["score"] * 100 for c in CATEGORIES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lighthouse", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per page and device")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lighthouse.md")
    args = parser.parse_args(argv)
    binary = lighthouse()
    env = {
        "FIGSERVE_FIGURES": "spirals",
        "FIGSERVE_PAGES": str(ROOT / "examples" / "pages"),
        "PYTHONPATH": str(ROOT / "examples"),
        "FIGSERVE_JOBS_DIR": tempfile.mkdtemp(prefix="figserve-lighthouse-"),
    }
    rows = []
    started = time.monotonic()
    with live_server(env=env) as server, tempfile.TemporaryDirectory() as scratch:
        job, cookie = _job(server.url)
        _warm(server.url, job)
        for path in (*PAGES, job, "/no-such-page"):
            for desktop in (False, True):
                runs = [
                    _run(binary, server.url + path, desktop, cookie, Path(scratch) / "r.json")
                    for _ in range(args.runs)
                ]
                scored = [r for r in runs if r]
                medians = [
                    f"{statistics.median(r[c] for r in scored):.0f}" if scored else "not scored"
                    for c in CATEGORIES
                ]
                shown = "/jobs/<id>" if path == job else path
                row = f"| `{shown}` | {'desktop' if desktop else 'mobile'} | " + " | ".join(medians)
                rows.append(row + " |")
                print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "# Lighthouse",
            "",
            f"`python -m bench.lighthouse --runs {args.runs}`: lighthouse {VERSION}, Debian's "
            f"Chromium, median of {args.runs} runs, after one warm-up load of each page "
            f"({time.monotonic() - started:.0f} s; load average {load:.1f} at the end, on "
            f"{os.cpu_count()} cores: performance drops when other work shares the machine).",
            "",
            "| page | device | performance | accessibility | best practices | SEO |",
            "|---|---|---:|---:|---:|---:|",
            *rows,
            "",
            "A job page is private and says `noindex` (its SEO score counts that); Lighthouse "
            "does not score a page that answers 404.",
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
