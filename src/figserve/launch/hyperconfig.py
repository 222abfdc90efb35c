"""``hypercorn.toml``, read and checked: the one server configuration of ``hypercorn`` and of
``python -m figserve serve``.

Hypercorn takes any key a TOML file holds and sets it as an attribute, so a misspelt key
(``graceful_timout``) is silently ignored, and a value of the wrong type fails later or never.
Here every key must be one of Hypercorn's settings, every value of its type, and the values
figserve depends on within their range; the message names the file, the key and the fix.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.config import Config

from ..startup import StartError

DEFAULT_FILE = "hypercorn.toml"
# What figserve runs with when no file is found (the shipped hypercorn.toml says the same; a
# test keeps them equal).
DEFAULTS: dict[str, Any] = {
    "bind": ["127.0.0.1:8000"],
    "workers": 1,
    "worker_class": "asyncio",
    "accesslog": "-",
    "access_log_format": '%(h)s "%(R)s" %(s)s %(b)s %(D)sus "%(a)s"',
    "errorlog": "-",
    "loglevel": "INFO",
    "graceful_timeout": 15,
    "keep_alive_timeout": 5,
    "backlog": 100,
}
# Keys that name Python objects, which a file cannot give.
_OBJECTS = frozenset({"logger_class", "log", "ssl_enabled", "cert_reqs"})
_WORKER_CLASSES = ("asyncio", "uvloop")  # figserve is an asyncio app: no trio
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ServerConfigError(StartError):
    """The server configuration cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ServerConfig:
    mapping: dict[str, Any]  # the checked keys, overrides applied (what workers are given)
    source: str  # the file it came from, or a note that none was found

    def hypercorn(self) -> Config:
        return Config.from_mapping(self.mapping)

    @property
    def graceful_timeout(self) -> float:
        return float(self.mapping.get("graceful_timeout", Config.graceful_timeout))

    @property
    def workers(self) -> int:
        return int(self.mapping.get("workers", 1))


def settable_keys() -> dict[str, Any]:
    """Hypercorn's settings a file may set, with their defaults."""
    keys: dict[str, Any] = {}
    for name in dir(Config):
        if name.startswith("_") or name in _OBJECTS:
            continue
        value = getattr(Config, name)
        if isinstance(value, property):
            if value.fset is not None:
                keys[name] = getattr(Config(), name)
        elif not callable(value):
            keys[name] = value
    return keys


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> ServerConfig:
    """The configuration of ``path`` (or ``./hypercorn.toml`` if there is one, else
    ``DEFAULTS``) with ``overrides`` on top, checked."""
    if path is None and not Path(DEFAULT_FILE).is_file():
        mapping, source = dict(DEFAULTS), f"no {DEFAULT_FILE} in {os.getcwd()}: figserve's defaults"
    else:
        file = Path(path or DEFAULT_FILE)
        source = str(file)
        try:
            with open(file, "rb") as f:
                mapping = tomllib.load(f)
        except FileNotFoundError:
            raise ServerConfigError(f"{file}: no such file") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ServerConfigError(f"{file}: {exc}") from None
    mapping.update(overrides or {})
    check(mapping, source)
    return ServerConfig(mapping, source)


def check(mapping: Mapping[str, Any], source: str) -> None:
    """Raise ``ServerConfigError`` for the first key of ``mapping`` that cannot be used."""
    known = settable_keys()

    def fail(message: str) -> ServerConfigError:
        return ServerConfigError(f"{source}: {message}")

    for key, value in mapping.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(f"{key!r} is not a Hypercorn setting{hint}")
        problem = _type_problem(value, known[key])
        if problem:
            raise fail(f"{key} = {value!r}: {problem}")
    _check_values(mapping, fail)


def _type_problem(value: Any, default: Any) -> str | None:
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int | float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    if isinstance(default, list):
        ok = isinstance(value, list | str) and all(isinstance(v, str) for v in value)
        return None if ok else "must be a list of strings"
    if default is None and isinstance(value, list | dict):
        return "must be a single value"
    return None


def _check_values(mapping: Mapping[str, Any], fail: Any) -> None:
    if "workers" in mapping and (not isinstance(mapping["workers"], int) or mapping["workers"] < 1):
        raise fail(f"workers = {mapping['workers']!r}: must be a whole number, 1 or more")
    for key in ("graceful_timeout", "keep_alive_timeout", "startup_timeout"):
        if key in mapping and mapping[key] < 0:
            raise fail(f"{key} = {mapping[key]!r}: must be 0 or more seconds")
    if mapping.get("worker_class", "asyncio") not in _WORKER_CLASSES:
        raise fail(
            f"worker_class = {mapping['worker_class']!r}: figserve runs on asyncio; use "
            f"{' or '.join(repr(c) for c in _WORKER_CLASSES)}"
        )
    level = mapping.get("loglevel", "INFO")
    if str(level).upper() not in _LEVELS:
        raise fail(f"loglevel = {level!r}: one of {', '.join(_LEVELS)}")
    binds = mapping.get("bind", [])
    for bind in [binds] if isinstance(binds, str) else binds:
        if not bind or any(c.isspace() for c in bind):
            raise fail(f"bind = {bind!r}: an address such as 127.0.0.1:8000 or unix:/path")
    fmt = mapping.get("access_log_format")
    if fmt is not None:
        try:
            fmt % _Atoms()
        except (TypeError, ValueError, KeyError) as exc:
            raise fail(f"access_log_format = {fmt!r}: {exc}") from None


class _Atoms(dict):
    """Stands in for an access log line's values: any key, a string or a number."""

    def __getitem__(self, key: str) -> Any:
        return 0 if key in {"D", "T", "s"} else "-"


def log_level(mapping: Mapping[str, Any]) -> int:
    return logging.getLevelName(str(mapping.get("loglevel", "INFO")).upper())
