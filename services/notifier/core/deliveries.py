"""A delivery's state machine, as functions the task adapter asks.

A delivery is ``Pending -> Delivered | Failed | Skipped``. ``Pending`` covers
"not sent yet", "being sent" (claimed: a worker and a lease) and "waiting for a
retry" (``next_attempt_at``). Each send attempt ends in an ``Outcome``; ``after``
says what to write. ``may_claim`` says what a delivered message may do with a
delivery, which is what makes redelivered and duplicated messages harmless.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any


class Phase(enum.StrEnum):
    PENDING = "Pending"
    DELIVERED = "Delivered"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class Claim(enum.Enum):
    SEND = "send"
    # Finished already (a redelivery after the record committed).
    DONE = "done"
    # Another worker holds a live claim (a duplicate message).
    BUSY = "busy"
    # A retry is scheduled later than now (a duplicate of the retry message).
    EARLY = "early"


# A retry message may arrive a little before the time the database holds (clock
# differences between hosts, rounding of countdowns).
EARLY_TOLERANCE = dt.timedelta(seconds=1)


def may_claim(
    phase: str,
    worker: str | None,
    lease_until: dt.datetime | None,
    next_attempt_at: dt.datetime | None,
    now: dt.datetime,
    *,
    owner_dead: bool,
) -> Claim:
    if phase != Phase.PENDING:
        return Claim.DONE
    if worker is not None and not owner_dead and lease_until is not None and lease_until > now:
        return Claim.BUSY
    if worker is None and next_attempt_at is not None and next_attempt_at > now + EARLY_TOLERANCE:
        return Claim.EARLY
    return Claim.SEND


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The frozen result of one send attempt."""

    ok: bool
    reference: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    temporary: bool = False
    # Seconds the Sink asked us to wait (Retry-After), for temporary failures.
    retry_after: float | None = None
    # Not an attempt at all: the circuit breaker kept the call from being made.
    held: bool = False


@dataclasses.dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(attempt - 1, 0)))


@dataclasses.dataclass(frozen=True)
class Record:
    """What to write after an attempt; ``retry_in`` set means stay Pending."""

    phase: Phase
    error: str | None
    retry_in: float | None = None
    # Whether the attempt counts (a breaker hold does not).
    counts: bool = True


def after(outcome: Outcome, *, attempt: int, max_attempts: int, backoff: Backoff) -> Record:
    if outcome.ok:
        return Record(Phase.DELIVERED, None)
    if outcome.held:
        return Record(
            Phase.PENDING, outcome.error, retry_in=outcome.retry_after or 0.0, counts=False
        )
    if not outcome.temporary:
        return Record(Phase.FAILED, outcome.error)
    if attempt >= max_attempts:
        return Record(Phase.FAILED, f"{outcome.error} (gave up after {attempt} attempts)")
    wait = backoff.delay(attempt)
    if outcome.retry_after is not None:
        # Retry-After is the Sink's own word on when it can take us again.
        wait = max(wait, outcome.retry_after)
    return Record(Phase.PENDING, outcome.error, retry_in=wait)
