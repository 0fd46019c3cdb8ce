"""What a delivery message may do, and what an attempt's outcome writes."""

from __future__ import annotations

import datetime as dt

import pytest

from services.notifier.core import deliveries
from services.notifier.core.deliveries import Backoff, Claim, Outcome, Phase

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(seconds=30)
EARLIER = NOW - dt.timedelta(seconds=30)
BACKOFF = Backoff(base=5, cap=60)


@pytest.mark.parametrize(
    ("phase", "worker", "lease", "next_at", "dead", "expected"),
    [
        ("Pending", None, None, None, False, Claim.SEND),
        ("Delivered", None, None, None, False, Claim.DONE),
        ("Skipped", None, None, None, False, Claim.DONE),
        ("Pending", "h:1", LATER, None, False, Claim.BUSY),
        ("Pending", "h:1", LATER, None, True, Claim.SEND),  # owner died
        ("Pending", "h:1", EARLIER, None, False, Claim.SEND),  # lease ran out
        ("Pending", None, None, LATER, False, Claim.EARLY),
        ("Pending", None, None, NOW + dt.timedelta(milliseconds=500), False, Claim.SEND),
        ("Pending", None, None, EARLIER, False, Claim.SEND),
    ],
)
def test_may_claim(  # noqa: PLR0917  (one argument per parametrize column)
    phase: str,
    worker: str | None,
    lease: dt.datetime | None,
    next_at: dt.datetime | None,
    dead: bool,
    expected: Claim,
) -> None:
    assert deliveries.may_claim(phase, worker, lease, next_at, NOW, owner_dead=dead) is expected


def test_success_is_delivered() -> None:
    record = deliveries.after(Outcome(ok=True), attempt=1, max_attempts=3, backoff=BACKOFF)
    assert record == deliveries.Record(Phase.DELIVERED, None)


def test_permanent_fails_at_once() -> None:
    record = deliveries.after(
        Outcome(ok=False, error="channel_not_found"), attempt=1, max_attempts=8, backoff=BACKOFF
    )
    assert (record.phase, record.error, record.retry_in) == (
        Phase.FAILED,
        "channel_not_found",
        None,
    )


def test_temporary_backs_off_and_honours_a_longer_retry_after() -> None:
    def retry(attempt: int, after: float | None = None) -> float | None:
        outcome = Outcome(ok=False, error="500", temporary=True, retry_after=after)
        return deliveries.after(outcome, attempt=attempt, max_attempts=8, backoff=BACKOFF).retry_in

    assert [retry(n) for n in (1, 2, 3, 5)] == [5, 10, 20, 60]
    assert retry(1, after=42) == 42
    assert retry(3, after=1) == 20


def test_temporary_gives_up_after_the_last_attempt() -> None:
    outcome = Outcome(ok=False, error="503", temporary=True)
    record = deliveries.after(outcome, attempt=3, max_attempts=3, backoff=BACKOFF)
    assert record.phase is Phase.FAILED
    assert record.error == "503 (gave up after 3 attempts)"


def test_a_breaker_hold_is_not_an_attempt() -> None:
    outcome = Outcome(ok=False, error="open", held=True, retry_after=12)
    record = deliveries.after(outcome, attempt=8, max_attempts=8, backoff=BACKOFF)
    assert (record.phase, record.retry_in, record.counts) == (Phase.PENDING, 12, False)
