"""The shipped configuration: hypercorn.toml and figserve's own settings."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from unittest import mock

import pytest
from hypercorn.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from figserve.config import Settings
from tests.support.strategies import scalar_text

ROOT = Path(__file__).resolve().parent.parent


def test_every_hypercorn_toml_key_is_known_to_hypercorn():
    # Hypercorn silently ignores misspelt keys, so check each one against its Config.
    with open(ROOT / "hypercorn.toml", "rb") as f:
        keys = set(tomllib.load(f))
    defaults = Config()
    unknown = sorted(k for k in keys if not hasattr(defaults, k))
    assert unknown == []


def test_hypercorn_loads_the_shipped_config():
    config = Config.from_toml(ROOT / "hypercorn.toml")
    assert config.bind == ["127.0.0.1:8000"]
    assert config.workers >= 1
    assert config.graceful_timeout > 0
    assert config.accesslog is not None


def test_every_hypercorn_toml_key_is_commented():
    lines = (ROOT / "hypercorn.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"no comment above: {line}"


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FIGSERVE_RENDER_THREADS", "3")
    monkeypatch.setenv("FIGSERVE_WARM_UP", "false")
    settings = Settings.from_env()
    assert settings.render_threads == 3
    assert settings.warm_up is False
    monkeypatch.setenv("FIGSERVE_RENDER_THREADS", "many")
    with pytest.raises(ValueError, match="FIGSERVE_RENDER_THREADS='many'"):
        Settings.from_env()


def test_settings_in_code_override_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("FIGSERVE_RENDER_THREADS", "3")
    assert Settings.from_env({"render_threads": 5}).render_threads == 5
    with pytest.raises(ValueError, match="setting render_threads"):
        Settings.from_env({"render_threads": -1})
    with pytest.raises(KeyError, match="render_thread"):
        Settings.from_env({"render_thread": 1})


FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
setting_names = st.sampled_from([f"FIGSERVE_{name.upper()}" for name in Settings.model_fields])


# What an environment can hold: no NUL, no lone surrogates.
environment_text = scalar_text().filter(lambda s: ("\x00" not in s and s.isprintable()) or s == "")


@FAST
@given(st.dictionaries(setting_names, environment_text, max_size=4))
def test_settings_from_env_convert_or_name_the_variable(environ: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIGSERVE_")}
    try:
        with mock.patch.dict(os.environ, {**clean, **environ}, clear=True):
            parsed = Settings.from_env()
    except ValueError as exc:
        assert any(name in str(exc) for name in environ)
    else:
        for name, raw in environ.items():
            field = name.removeprefix("FIGSERVE_").lower()
            value = getattr(parsed, field)
            # Of the field's declared type (strictly: no further conversion needed).
            TypeAdapter(Settings.model_fields[field].annotation).validate_python(value, strict=True)
            if isinstance(value, str):
                assert value == raw
