"""This machine: the folder of figserve's lasting state, private per-user folders in the temp
directory for what lasts one run, and whether a process runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def private_dir(name: str) -> Path:
    """``<tmp>/figserve-<uid>/<name>``, made if missing, readable by this user only.

    In a temp directory shared with other users, someone could make the folder first (or a link
    in its place) to read or plant files: such a folder is refused.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = Path(tempfile.gettempdir()) / f"figserve-{uid}"
    base.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and (base.is_symlink() or base.stat().st_uid != uid):
        raise PermissionError(f"{base} belongs to another user, or is a link")
    path = base / name
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def state_dir(name: str) -> Path:
    """``<state>/<name>``, made if missing, readable by this user only: where figserve keeps
    what must outlive a restart (jobs, their results, the owner key), out of reach of the
    cleaners of temp folders.

    ``<state>`` is systemd's ``$STATE_DIRECTORY`` (a unit with ``StateDirectory=figserve``),
    else ``$XDG_STATE_HOME/figserve``, else ``~/.local/state/figserve``.
    """
    if os.environ.get("STATE_DIRECTORY"):
        # systemd may list several, separated by colons: the first is this unit's own.
        base = Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    elif os.environ.get("XDG_STATE_HOME", "").startswith("/"):
        base = Path(os.environ["XDG_STATE_HOME"]) / "figserve"
    else:
        base = Path.home() / ".local" / "state" / "figserve"
    path = base / name
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (Linux; "" elsewhere), so a reused pid is not taken
    for the process that had it before."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22; the command name (field 2) may contain spaces, so count from its ")".
    return stat.rsplit(")", 1)[-1].split()[19]


def pid_alive(pid: int, started: str = "") -> bool:
    """Whether ``pid`` runs (and, given its ``start_time``, is still that process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not started or start_time(pid) == started
