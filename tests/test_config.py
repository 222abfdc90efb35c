"""The shipped configuration: hypercorn.toml and figserve's own settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypercorn.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.config import Settings
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


def test_settings_come_from_the_environment():
    settings = Settings.from_env({"FIGSERVE_RENDER_THREADS": "3", "FIGSERVE_WARM_UP": "false"})
    assert settings.render_threads == 3
    assert settings.warm_up is False
    with pytest.raises(ValueError, match="FIGSERVE_RENDER_THREADS"):
        Settings.from_env({"FIGSERVE_RENDER_THREADS": "many"})


FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
setting_names = st.sampled_from([f"FIGSERVE_{name.upper()}" for name in Settings.__annotations__])


@FAST
@given(st.dictionaries(setting_names, scalar_text(), max_size=4))
def test_settings_from_env_convert_or_name_the_variable(environ: dict[str, str]) -> None:
    try:
        parsed = Settings.from_env(environ)
    except ValueError as exc:
        assert any(name in str(exc) for name in environ)
    else:
        for name, raw in environ.items():
            value = getattr(parsed, name.removeprefix("FIGSERVE_").lower())
            assert isinstance(
                value, type(getattr(Settings(), name.removeprefix("FIGSERVE_").lower()))
            )
            if isinstance(value, str):
                assert value == raw
