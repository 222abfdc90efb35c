"""Processes as ``/proc`` shows them: alive or gone, and the members of a process group."""

from __future__ import annotations

from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: count from its ")".
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting to be reaped."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in {"Z", "X"}


def group_pids(pgid: int) -> set[int]:
    """Live (not zombie) processes of a process group."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[3]) == pgid and fields[0] not in {"Z", "X"}:
                found.add(int(entry.name))
    return found


def parent(pid: int) -> int:
    fields = _stat(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return int(fields[1])
