"""Scale-out settings and the start-up check of Redis, without a running server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from figserve import scaleout
from figserve.config import Settings, redact
from tests.support.live import free_port


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://redis-host",
        "redis://:secret@cache.internal:6380/2",
        "rediss://user:secret@[::1]:6379/0",
    ],
)
def test_redis_urls_are_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://", "redis://h:1/0?db=2", "redis://h/x", "unix:///s"]
)
def test_other_urls_are_refused_at_start_without_their_password(url: str) -> None:
    with pytest.raises(ValueError, match="FIGSERVE_REDIS_URL must be"):
        Settings(redis_url=url)
    with pytest.raises(ValueError) as refused:
        Settings(redis_url=url.replace("//", "//:hunter2@", 1) + " ")
    assert "hunter2" not in str(refused.value)


@given(password=st.text(st.characters(blacklist_characters="@/"), min_size=1, max_size=30))
def test_a_password_is_never_shown(password: str) -> None:
    shown = redact(f"redis://user:{password}@host:6379/0")
    assert shown == "redis://user:***@host:6379/0"


def test_settings_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("FIGSERVE_REDIS_URL", "redis://h:1/3")
    monkeypatch.setenv("FIGSERVE_SHARED_CACHE_BYTES", "1000")
    monkeypatch.setenv("FIGSERVE_REDIS_CACHE_TIMEOUT", "0.2")
    settings = Settings.from_env()
    assert settings.redis_url == "redis://h:1/3"
    assert settings.shared_cache_bytes == 1000 and settings.redis_cache_timeout == 0.2


async def test_an_unreachable_redis_is_named_with_what_to_do(monkeypatch) -> None:
    monkeypatch.setattr(scaleout, "START_TIMEOUT", 0.5)
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    settings = Settings(redis_url=url)
    client = scaleout.cache_client(settings)
    with pytest.raises(scaleout.RedisUnavailable) as error:
        await scaleout.check(client, settings, "the render cache")
    await client.aclose()
    message = str(error.value)
    assert f"FIGSERVE_REDIS_URL={redact(url)}" in message and "secret" not in message
    assert "unset it to run embedded" in message
