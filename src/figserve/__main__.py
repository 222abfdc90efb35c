"""figserve's command line: ``python -m figserve`` (or the ``figserve`` script).

figserve serve [--config hypercorn.toml] [--bind ADDR] [--workers N] [--app MODULE:APP]
figserve check [--config hypercorn.toml] [--app MODULE:APP]
figserve worker            (a standalone job worker, scale-out mode)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import __version__, startup

DEFAULT_APP = "figserve.app:create_app()"


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="Hypercorn's settings (default: ./hypercorn.toml if there is one, else figserve's)",
    )
    parser.add_argument("--app", default=DEFAULT_APP, help=f"the app (default: {DEFAULT_APP})")
    parser.add_argument("--bind", "-b", action="append", help="address to listen on (repeatable)")
    parser.add_argument("--workers", "-w", type=int, help="worker processes")
    parser.add_argument("--graceful-timeout", type=float, help="seconds a stop waits for requests")
    parser.add_argument("--keep-alive", type=float, help="seconds an idle connection stays open")
    parser.add_argument("--access-logfile", help="access log: a file, or - for standard output")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "bind": args.bind,
        "workers": args.workers,
        "graceful_timeout": args.graceful_timeout,
        "keep_alive_timeout": args.keep_alive,
        "accesslog": args.access_logfile,
    }
    return {key: value for key, value in given.items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="figserve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"figserve {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _server_options(commands.add_parser("serve", help="run the server (Hypercorn, supervised)"))
    _server_options(commands.add_parser("check", help="check the configuration, then exit"))
    commands.add_parser("worker", help="a standalone job worker (scale-out mode)", add_help=False)
    if argv[:1] == ["worker"]:  # the job worker, run as `python -m figserve.jobs.worker` runs
        import runpy

        sys.argv = ["figserve worker", *argv[1:]]
        runpy.run_module("figserve.jobs.worker", run_name="__main__", alter_sys=True)
        return 0
    args = parser.parse_args(argv)
    from .launch import hyperconfig

    try:
        server = hyperconfig.load(args.config, _overrides(args))
    except hyperconfig.ServerConfigError as exc:
        prefix = "figserve check" if args.command == "check" else "figserve: the start failed"
        print(f"{prefix}: {exc}", file=sys.stderr)
        return startup.CONFIGURATION
    if args.command == "check":
        from .launch.check import check

        return check(server, args.app)
    from .config import Settings, SettingsError
    from .launch.master import serve

    try:
        Settings.from_env()  # the cheapest check, before any worker starts
    except SettingsError as exc:
        print(startup.message(str(exc)), file=sys.stderr)
        return startup.CONFIGURATION
    return serve(server, args.app)


if __name__ == "__main__":
    sys.exit(main())
