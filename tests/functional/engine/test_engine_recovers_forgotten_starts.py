"""A run whose start message was lost (say, Redis restarted without persistence after
the outbox marked it published) is started by the recovery pass, once."""

from __future__ import annotations

import datetime as dt

from celery import Celery
from enginekit import Harness

from services.engine.app import recover_once
from services.engine.runtime import runtime_for
from shared.db.models import utcnow


def test_a_pending_run_nobody_started_is_started_by_recovery(
    harness: Harness, inproc: Celery
) -> None:
    harness.put_workflow({"steps": [{"name": "say", "type": "cli", "command": ["echo", "hi"]}]})
    run_id = harness.add_run()  # committed with its outbox entry; the message never sent
    runtime = runtime_for(inproc)
    # Not yet: a run is given stall_seconds to be started the normal way.
    assert recover_once(runtime) == 0
    later = utcnow() + dt.timedelta(seconds=runtime.settings.engine.stall_seconds + 1)
    assert recover_once(runtime, now=later) == 1
    run = harness.wait_finished(run_id)
    assert run.phase == "Succeeded"
    # Touched when re-sent: the next pass leaves it alone.
    assert recover_once(runtime, now=later) == 0
    [step] = harness.steps(run_id)
    assert step.attempts == 1
