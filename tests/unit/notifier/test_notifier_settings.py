"""PF_NOTIFIER_* settings: defaults and the checks that fail fast."""

from __future__ import annotations

import pytest

from shared import settings
from shared.errors import ConfigError


def test_defaults() -> None:
    notifier = settings.from_env({}).notifier
    assert (notifier.pool, notifier.concurrency, notifier.lease_seconds) == ("prefork", 4, 60.0)
    assert notifier.breaker_redis_url == ""


def test_a_lease_shorter_than_a_send_is_refused() -> None:
    with pytest.raises(ConfigError, match="PF_NOTIFIER_LEASE_SECONDS=20: must exceed"):
        settings.from_env({"PF_NOTIFIER_LEASE_SECONDS": "20"})


def test_breaker_url_must_be_redis() -> None:
    with pytest.raises(ConfigError, match="PF_NOTIFIER_BREAKER_REDIS_URL"):
        settings.from_env({"PF_NOTIFIER_BREAKER_REDIS_URL": "http://x"})


def test_threads_pool_is_refused() -> None:
    with pytest.raises(ConfigError, match="PF_NOTIFIER_POOL"):
        settings.from_env({"PF_NOTIFIER_POOL": "threads"})


def test_public_url_loses_its_trailing_slash() -> None:
    assert settings.from_env({"PF_PUBLIC_URL": "https://pf/"}).notifier.public_url == "https://pf"
