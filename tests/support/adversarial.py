"""Test-only figures that try to corrupt the render process they run in.

Each one changes something outside its own ``Figure`` (settings, threads, processes, the
process's socket, matplotlib's code) and then draws a small figure, as a careless or hostile
figure module would. ``CATALOGUE`` says, for each, what the render process must do about it:
put the state back (``restored``), replace itself (``recycle``), or fail that one request
(``fails``: the figure raised, or broke its process's protocol). Processes a figure starts write
``child-<pid>`` into the gate folder, so a test can check that none outlives its render.

They are module-level functions, so they reach render processes by reference like any figure.
"""

from __future__ import annotations

import ctypes
import gc
import io
import locale
import logging
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.axes
import matplotlib.colors
import matplotlib.dates
import matplotlib.figure
import matplotlib.text
import matplotlib.units
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure

from figserve.figures import FIGURES, Registry
from tests.support.gates import GateParams

SLEEP = 120.0  # how long a left-behind process would live if nobody killed it


def _draw(fig: Figure) -> None:
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_title("adversarial")


def _mark(p: GateParams, pid: int) -> None:
    if p.gate:
        (Path(p.gate) / f"child-{pid}").touch()


def _socket_fd() -> int:
    """The render process's own socket (its only one)."""
    for fd in range(3, 1024):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                return fd
        except OSError:
            continue
    raise RuntimeError("no socket")


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj)
    return b"FSR1" + struct.pack(">Q", len(data)) + data


# -- state a render process puts back ------------------------------------------------------


def rc_set(fig: Figure, p: GateParams) -> None:
    matplotlib.rcParams["lines.linewidth"] = 9
    matplotlib.rcParams["font.size"] = 25
    matplotlib.rcParams["axes.facecolor"] = "black"
    matplotlib.rcParams["svg.fonttype"] = "none"
    _draw(fig)


def rc_mutate(fig: Figure, p: GateParams) -> None:
    matplotlib.rcParams["font.sans-serif"].insert(0, "DejaVu Serif")  # in place
    matplotlib.rcParamsDefault["lines.color"] = "red"
    _draw(fig)


def style_use(fig: Figure, p: GateParams) -> None:
    import matplotlib.style

    matplotlib.style.use("dark_background")
    _draw(fig)


def chdir(fig: Figure, p: GateParams) -> None:
    os.chdir("/")
    _draw(fig)


def environ(fig: Figure, p: GateParams) -> None:
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    os.environ["SOURCE_DATE_EPOCH"] = "0"
    os.environ.pop("HOME", None)
    _draw(fig)


def umask(fig: Figure, p: GateParams) -> None:
    os.umask(0o777)
    _draw(fig)


def signals(fig: Figure, p: GateParams) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 30)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGUSR2})
    _draw(fig)


def alarm(fig: Figure, p: GateParams) -> None:
    signal.alarm(5)  # SIGALRM's default action would kill a later render
    _draw(fig)


def import_path(fig: Figure, p: GateParams) -> None:
    sys.path.insert(0, "/nonexistent")
    sys.path = [*sys.path, "/elsewhere"]
    _draw(fig)


def streams(fig: Figure, p: GateParams) -> None:
    sys.stdout = io.StringIO()
    sys.stderr = io.StringIO()
    _draw(fig)


def tracer(fig: Figure, p: GateParams) -> None:
    sys.settrace(lambda *a: None)  # every later line of Python would call it
    sys.setprofile(lambda *a: None)
    threading.settrace(lambda *a: None)
    _draw(fig)


def limits(fig: Figure, p: GateParams) -> None:
    sys.setrecursionlimit(400)
    sys.setswitchinterval(1.0)
    sys.set_int_max_str_digits(640)
    gc.disable()
    gc.set_threshold(1, 1, 1)
    _draw(fig)


def warnings_error(fig: Figure, p: GateParams) -> None:
    warnings.simplefilter("error")  # any warning in a later render would fail it
    _draw(fig)


def numpy_state(fig: Figure, p: GateParams) -> None:
    np.seterr(all="raise")
    np.set_printoptions(precision=2, legacy="1.13")
    _draw(fig)


def logging_debug(fig: Figure, p: GateParams) -> None:
    matplotlib.set_loglevel("debug")
    logging.getLogger().addHandler(logging.StreamHandler(io.StringIO()))
    logging.getLogger().setLevel(logging.DEBUG)
    _draw(fig)


def set_locale(fig: Figure, p: GateParams) -> None:
    now = locale.setlocale(locale.LC_ALL)
    locale.setlocale(locale.LC_ALL, "C.UTF-8" if now == "C" else "C")
    _draw(fig)


def resource_limits(fig: Figure, p: GateParams) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 64), hard))
    _draw(fig)


def death_signal(fig: Figure, p: GateParams) -> None:
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: outlive the server
    _draw(fig)


# -- what only a new process undoes ---------------------------------------------------------


def spin_thread(fig: Figure, p: GateParams) -> None:
    def spin() -> None:
        x = 0
        while True:
            x += 1

    threading.Thread(target=spin, daemon=True).start()
    _draw(fig)


def sleepy_thread(fig: Figure, p: GateParams) -> None:
    def later() -> None:
        time.sleep(0.5)
        matplotlib.rcParams["lines.linewidth"] = 20  # during some later render

    threading.Thread(target=later, daemon=True).start()
    _draw(fig)


def fork_child(fig: Figure, p: GateParams) -> None:
    """Forks and lets the child go on: both draw and both answer."""
    pid = os.fork()
    if pid:
        _mark(p, pid)
    _draw(fig)


def fork_setsid(fig: Figure, p: GateParams) -> None:
    """A child that leaves the process group and session, then lives on."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        time.sleep(SLEEP)
        os._exit(0)
    _mark(p, pid)
    _draw(fig)


def double_fork(fig: Figure, p: GateParams) -> None:
    """A daemon the classic way: the child forks a grandchild and exits at once."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(SLEEP)
            os._exit(0)
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    _mark(p, int(os.read(read, 32)))
    os.close(read)
    _draw(fig)


def subprocess_left(fig: Figure, p: GateParams) -> None:
    proc = subprocess.Popen(["sleep", str(SLEEP)], start_new_session=True)
    _mark(p, proc.pid)
    _draw(fig)


def dup_stdout(fig: Figure, p: GateParams) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    _draw(fig)


def setsid_self(fig: Figure, p: GateParams) -> None:
    os.setsid()
    _draw(fig)


def nice(fig: Figure, p: GateParams) -> None:
    os.nice(5)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    _draw(fig)


def patch_method(fig: Figure, p: GateParams) -> None:
    original = matplotlib.axes.Axes.plot

    def plot(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("linewidth", 8)
        return original(self, *args, **kwargs)

    matplotlib.axes.Axes.plot = plot  # type: ignore[method-assign]
    _draw(fig)


def patch_module(fig: Figure, p: GateParams) -> None:
    matplotlib.colors.to_rgba = lambda *a, **k: (0.0, 0.0, 0.0, 1.0)  # type: ignore[assignment]
    _draw(fig)


def patch_epoch(fig: Figure, p: GateParams) -> None:
    matplotlib.dates._epoch = "1900-01-01T00:00:00"  # type: ignore[attr-defined]
    _draw(fig)


def swap_module(fig: Figure, p: GateParams) -> None:
    import types

    fake = types.ModuleType("matplotlib.text")
    fake.__dict__.update(vars(matplotlib.text))
    sys.modules["matplotlib.text"] = fake
    _draw(fig)


def register_units(fig: Figure, p: GateParams) -> None:
    class Meters(float):
        pass

    matplotlib.units.registry[Meters] = matplotlib.units.ConversionInterface()
    _draw(fig)


def register_colormap(fig: Figure, p: GateParams) -> None:
    name = f"adversarial_{os.getpid()}"
    if name not in matplotlib.colormaps:
        matplotlib.colormaps.register(matplotlib.colormaps["viridis"], name=name)
    _draw(fig)


def add_font(fig: Figure, p: GateParams) -> None:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSerif.ttf"
    font_manager.fontManager.addfont(str(path))
    _draw(fig)


# -- failures of this request only ------------------------------------------------------------


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no string for you")


def str_raises(fig: Figure, p: GateParams) -> None:
    raise _Unprintable()


def exits(fig: Figure, p: GateParams) -> None:
    sys.exit(3)


def fake_reply(fig: Figure, p: GateParams) -> None:
    """Answers for the worker: a well-formed reply to another request, with other bytes."""
    fake = (0, os.getpid(), "ok", b"\x89PNG not yours", {}, 0.0, 0)
    os.write(_socket_fd(), _frame(fake))
    _draw(fig)


def garbage(fig: Figure, p: GateParams) -> None:
    os.write(_socket_fd(), b"\x00\x01 not a frame at all " * 4)
    _draw(fig)


def hostile_pickle(fig: Figure, p: GateParams) -> None:
    """A reply that would run code in the worker if it were unpickled as it is."""

    class Boom:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {p.gate}/pwned",))

    data = pickle.dumps((1, os.getpid(), "ok", Boom(), {}, 0.0, 0))
    os.write(_socket_fd(), b"FSR1" + struct.pack(">Q", len(data)) + data)
    _draw(fig)


def close_socket(fig: Figure, p: GateParams) -> None:
    os.close(_socket_fd())
    _draw(fig)


def swap_socket(fig: Figure, p: GateParams) -> None:
    """Puts a pipe where the socket was: the process can no longer answer."""
    read, write = os.pipe()
    os.dup2(write, _socket_fd())
    os.close(read)
    os.close(write)
    _draw(fig)


@dataclass(frozen=True)
class Case:
    draw: Callable[[Figure, GateParams], None]
    restored: frozenset[str] = frozenset()  # put back, the process kept
    recycle: frozenset[str] = frozenset()  # the process replaced
    # Put back where the process may (a superuser may lower its niceness), else replaced.
    either: frozenset[str] = frozenset()
    fails: bool | None = False  # this request gets an error (500 or 503); None: it may
    children: bool = False  # it leaves processes (marked in the gate folder)


def _r(*names: str) -> frozenset[str]:
    return frozenset(names)


CATALOGUE: dict[str, Case] = {
    "rc_set": Case(rc_set, restored=_r("rcParams")),
    "rc_mutate": Case(rc_mutate, restored=_r("rcParams")),
    "style_use": Case(style_use, restored=_r("rcParams")),
    "chdir": Case(chdir, restored=_r("working directory")),
    "environ": Case(environ, restored=_r("environment")),
    "umask": Case(umask, restored=_r("umask")),
    "signals": Case(signals, restored=_r("signal handlers", "signal mask", "timers")),
    "alarm": Case(alarm, restored=_r("timers")),
    "import_path": Case(import_path, restored=_r("import path")),
    "streams": Case(streams, restored=_r("standard streams")),
    "tracer": Case(tracer, restored=_r("tracing")),
    "limits": Case(limits, restored=_r("interpreter limits", "garbage collector")),
    "warnings_error": Case(warnings_error, restored=_r("warning filters")),
    "numpy_state": Case(numpy_state, restored=_r("numpy error handling", "numpy print options")),
    "logging_debug": Case(logging_debug, restored=_r("logging")),
    "set_locale": Case(set_locale, restored=_r("locale")),
    "resource_limits": Case(resource_limits, restored=_r("resource limits")),
    "death_signal": Case(death_signal, restored=_r("death signal")),
    "spin_thread": Case(spin_thread, recycle=_r("threads")),
    "sleepy_thread": Case(sleepy_thread, recycle=_r("threads")),
    # The child answers too: the worker sees its reply (wrong pid) or the parent's (which
    # reports the child, killed by then).
    "fork_child": Case(fork_child, recycle=_r("child processes"), fails=None, children=True),
    "fork_setsid": Case(fork_setsid, recycle=_r("child processes"), children=True),
    "double_fork": Case(double_fork, recycle=_r("child processes"), children=True),
    "subprocess_left": Case(subprocess_left, recycle=_r("child processes"), children=True),
    "dup_stdout": Case(dup_stdout, recycle=_r("standard file descriptors")),
    "setsid_self": Case(setsid_self, recycle=_r("process group")),
    "nice": Case(nice, restored=_r("CPU affinity"), either=_r("priority")),
    "patch_method": Case(patch_method, recycle=_r("code")),
    "patch_module": Case(patch_module, recycle=_r("code")),
    "patch_epoch": Case(patch_epoch, recycle=_r("code")),
    "swap_module": Case(swap_module, recycle=_r("code")),
    "register_units": Case(register_units, recycle=_r("code")),
    "register_colormap": Case(register_colormap, recycle=_r("code")),
    "add_font": Case(add_font, recycle=_r("code")),
    "str_raises": Case(str_raises, fails=True),
    "exits": Case(exits, fails=True),
    "fake_reply": Case(fake_reply, fails=True),
    "garbage": Case(garbage, fails=True),
    "hostile_pickle": Case(hostile_pickle, fails=True),
    "close_socket": Case(close_socket, fails=True),
    "swap_socket": Case(swap_socket, fails=True),
}


def registry_with_adversarial_figures() -> Registry:
    """The shipped figures plus the adversarial figures above."""
    registry = FIGURES.copy()
    for name, case in CATALOGUE.items():
        registry.figure(name, title=name, description=f"{name} (tests only).", params=GateParams)(
            case.draw
        )
    return registry
