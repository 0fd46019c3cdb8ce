"""Which cron tick a scheduler pass starts."""

from __future__ import annotations

import datetime as dt

import pytest

from services.engine.core.schedules import due_tick
from shared.errors import ConfigError

UTC = dt.UTC


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC)


def test_a_recent_tick_is_due() -> None:
    assert due_tick("*/5 * * * *", "UTC", at(10, 5, 20)) == at(10, 5)
    assert due_tick("*/5 * * * *", "UTC", at(10, 5, 0)) == at(10, 5)


def test_an_old_tick_is_not_replayed() -> None:
    assert due_tick("*/5 * * * *", "UTC", at(10, 7)) is None


def test_the_time_zone_is_honoured() -> None:
    # 09:00 in Paris (UTC+1 in March before DST) is 08:00 UTC.
    assert due_tick("0 9 * * *", "Europe/Paris", at(8, 0, 30)) == at(8, 0)
    assert due_tick("0 9 * * *", "UTC", at(8, 0, 30)) is None


@pytest.mark.parametrize(("cron", "zone"), [("nope", "UTC"), ("* * * * *", "Mars/Base")])
def test_bad_schedules_are_config_errors(cron: str, zone: str) -> None:
    with pytest.raises(ConfigError):
        due_tick(cron, zone, at(1, 0))
