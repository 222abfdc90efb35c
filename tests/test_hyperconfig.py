"""hypercorn.toml as figserve's launcher and check read it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from figserve.launch import hyperconfig
from figserve.launch.hyperconfig import DEFAULTS, ServerConfigError, check, load, settable_keys
from tests.support.live import ROOT


def test_the_defaults_are_the_shipped_hypercorn_toml() -> None:
    with open(ROOT / "hypercorn.toml", "rb") as f:
        shipped = tomllib.load(f)
    assert shipped == DEFAULTS


def test_the_shipped_file_passes_and_overrides_apply() -> None:
    server = load(str(ROOT / "hypercorn.toml"), {"workers": 3, "bind": ["127.0.0.1:9"]})
    assert (server.workers, server.graceful_timeout) == (3, 15.0)
    assert server.hypercorn().bind == ["127.0.0.1:9"]


def test_without_a_file_figserves_defaults_apply(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    server = load()
    assert server.mapping == DEFAULTS and "figserve's defaults" in server.source


def test_every_hypercorn_setting_is_known_and_no_object_is() -> None:
    keys = settable_keys()
    for key in ("bind", "insecure_bind", "quic_bind", "root_path", "workers", "certfile"):
        assert key in keys
    for key in ("logger_class", "log", "ssl_enabled", "create_sockets", "from_toml"):
        assert key not in keys


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"workerz": 2}, "'workerz' is not a Hypercorn setting (did you mean 'workers'?)"),
        ({"logger_class": "x"}, "'logger_class' is not a Hypercorn setting"),
        ({"use_reloader": "yes"}, "use_reloader = 'yes': must be true or false"),
        ({"graceful_timeout": -1}, "graceful_timeout = -1: must be 0 or more seconds"),
        ({"loglevel": "LOUD"}, "loglevel = 'LOUD': one of DEBUG"),
        ({"bind": ["127.0.0.1: 80"]}, "bind = '127.0.0.1: 80': an address such as"),
        ({"bind": [1]}, "bind = [1]: must be a list of strings"),
        ({"access_log_format": "%(D)d %(h"}, "incomplete format"),
    ],
)
def test_a_wrong_key_or_value_is_named(mapping: dict, message: str) -> None:
    with pytest.raises(ServerConfigError) as caught:
        check(mapping, "my.toml")
    assert str(caught.value).startswith("my.toml: ")
    assert message in str(caught.value)


def test_a_check_failure_is_a_start_error() -> None:
    assert issubclass(hyperconfig.ServerConfigError, RuntimeError)


def test_the_systemd_unit_checks_serves_and_leaves_room_for_the_stop() -> None:
    from figserve.launch.master import STOP_MARGIN

    unit = {}
    for line in (ROOT / "deploy" / "figserve.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            unit.setdefault(key, value)
    assert unit["ExecStartPre"].endswith("/.venv/bin/figserve check")
    assert unit["ExecStart"].endswith("/.venv/bin/figserve serve")
    assert unit["KillMode"] == "mixed" and unit["RestartPreventExitStatus"] == "2"
    grace = load(str(ROOT / "hypercorn.toml")).graceful_timeout
    assert float(unit["TimeoutStopSec"]) > grace + STOP_MARGIN
