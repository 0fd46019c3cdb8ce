"""When a schedule Source fires: the cron tick to claim now, if any.

A scheduler pass looks at the latest tick at or before ``now`` and claims it if it
is recent (within ``grace`` seconds). Ticks missed while no scheduler ran are not
replayed: an investigation started an hour late about a state that has passed
helps nobody, and a stampede of catch-up runs would hurt. Several replicas may
all see the same tick; the store's unique key decides who starts it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter  # type: ignore[import-untyped]

from shared.errors import ConfigError


def due_tick(cron: str, timezone: str, now: dt.datetime, grace: float = 60.0) -> dt.datetime | None:
    """The tick (UTC) to start now, or None. ``now`` must be aware."""
    try:
        zone = zoneinfo.ZoneInfo(timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {timezone!r}") from exc
    if not croniter.is_valid(cron):
        raise ConfigError(f"{cron!r} is not a cron expression")
    local_now = now.astimezone(zone)
    # croniter's get_prev excludes a tick equal to the start; nudge past it.
    previous: dt.datetime = croniter(cron, local_now + dt.timedelta(microseconds=1)).get_prev(
        dt.datetime
    )
    tick = previous.astimezone(dt.UTC)
    if (now - tick).total_seconds() > grace:
        return None
    return tick
