"""What render processes say a task left behind (``hygiene.py``), as the worker sees it: checked
against the names it knows (a reply can never add a metric label), logged once per figure and
kind with what to do, and reported to the renderer's observer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .forkserver import Task

log = logging.getLogger("figserve.render")

# What a process may say it put back or cannot undo (hygiene.py); anything else is ignored, so a
# reply can never add a label to the metrics.
STATE_NAMES = frozenset(
    {
        "rcParams", "working directory", "environment", "umask", "signal mask",
        "signal handlers", "timers", "import path", "standard streams", "tracing",
        "interpreter limits", "garbage collector", "warning filters", "logging", "locale",
        "numpy error handling", "numpy print options", "resource limits", "priority",
        "CPU affinity", "death signal", "threads", "child processes",
        "standard file descriptors", "process group", "code",
    }
)  # fmt: skip

StateHook = Callable[[str, list[str], list[str]], None]


class Leftovers:
    def __init__(self, hook: StateHook | None) -> None:
        self.hook = hook
        self._told: set[tuple[str, str]] = set()

    def note(self, task: Task, meta: dict[str, Any]) -> bool:
        """Log (once per figure and kind) and report what a task left behind; whether the
        process must be replaced."""
        restored = _names(meta.get("reset"))
        recycle = _names(meta.get("recycle"))
        if not restored and not recycle:
            return False
        label = str(getattr(task, "label", type(task).__name__))
        if self.hook is not None:
            self.hook(label, restored, recycle)
        detail = meta.get("detail") if type(meta.get("detail")) is str else ""
        for what in restored + recycle:
            if (label, what) in self._told:
                continue
            self._told.add((label, what))
            if what in recycle:
                log.warning(
                    "figure %s left %s behind%s; its render process was replaced, so its next "
                    "images cost a fresh process: keep such changes inside the figure function "
                    "and undo them before it returns",
                    label,
                    what,
                    f" ({detail[:200]})" if detail and what == "code" else "",
                )
            else:
                log.warning(
                    "figure %s changed %s and left it changed; it was put back before the next "
                    "render (use matplotlib.rc_context or try/finally in the figure function)",
                    label,
                    what,
                )
        return bool(recycle)


def _names(value: Any) -> list[str]:
    if type(value) is not list:
        return []
    return [v for v in value if type(v) is str and v in STATE_NAMES]
