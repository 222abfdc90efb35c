"""Telling a figserve server from your own scripts that a figure's data changed (stdlib only).

A script that loads new data (a cron job, the end of an ETL run) can make the server show it at
once instead of within the figure's ``refresh`` seconds::

    from figserve.client import data_changed

    data_changed("https://figs.example.org", "sales", token=os.environ["FIGSERVE_ADMIN_TOKEN"])

or from a shell: ``python -m figserve.client https://figs.example.org sales`` (the token from
``FIGSERVE_ADMIN_TOKEN``). The server asks the figure's version function again now: the function
must see the change (a file's mtime, ``max(updated_at)``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote


class FigserveError(RuntimeError):
    """The server refused or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}" if status else message)
        self.status = status


def data_changed(
    url: str,
    figure: str,
    *,
    token: str,
    params: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Say that ``figure``'s data (only its images whose parameters include ``params``, if
    given) changed now. ``url`` is the server's address; ``token`` its ``FIGSERVE_ADMIN_TOKEN``.
    Returns the server's answer (``changed``: images whose version changed on the instance that
    answered); raises ``FigserveError`` with the server's explanation otherwise."""
    endpoint = f"{url.rstrip('/')}/api/figures/{quote(figure, safe='')}/changed"
    body = json.dumps({"params": params} if params else {}).encode()
    request = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise FigserveError(exc.code, _explained(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FigserveError(0, f"cannot reach {url}: {reason}") from None


def _explained(exc: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(exc.read())
        return f"{problem.get('title', exc.reason)}: {problem.get('detail', '')}".rstrip(": ")
    except (ValueError, OSError):
        return str(exc.reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m figserve.client",
        description="Tell a figserve server that a figure's data changed now.",
    )
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("figure", help="the figure's name")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="only the images with this parameter value (JSON or text); may be repeated",
    )
    args = parser.parse_args(argv)
    token = os.environ.get("FIGSERVE_ADMIN_TOKEN", "")
    if not token:
        parser.error("set FIGSERVE_ADMIN_TOKEN to the server's admin token")
    params: dict[str, Any] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param {item!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    try:
        answer = data_changed(args.url, args.figure, token=token, params=params or None)
    except FigserveError as exc:
        print(f"figserve: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
