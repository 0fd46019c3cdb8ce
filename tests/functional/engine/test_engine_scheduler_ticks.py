"""Schedule Sources: one run per tick across scheduler replicas, on both databases."""

from __future__ import annotations

import datetime as dt

from celery import Celery
from enginekit import Harness, start_run

from services.engine.scheduler import Scheduler
from shared.db import resources
from shared.queueing import START_WORKFLOW

TICK = dt.datetime(2026, 3, 2, 10, 5, tzinfo=dt.UTC)


def test_a_tick_starts_one_run_whatever_the_replicas(harness: Harness, inproc: Celery) -> None:
    with harness.sessions.begin() as session:
        resources.upsert(
            session,
            "Source",
            "default",
            "nightly",
            {
                "type": "schedule",
                "config": {"cron": "*/5 * * * *", "timezone": "UTC"},
                "triggerWorkflow": "triage",
                "context": {"cluster": "prod"},
            },
        )
    harness.put_workflow(
        {
            "steps": [
                {
                    "name": "say",
                    "type": "cli",
                    "command": ["echo", "{{ schedule.tick }} {{ source.context.cluster }}"],
                }
            ]
        }
    )
    replicas = [Scheduler(harness.sessions, None, outbox_lease=10) for _ in range(3)]
    created = [
        run for replica in replicas for run in replica.run_pass(TICK + dt.timedelta(seconds=2))
    ]
    assert len(created) == 1
    # A later pass within the same tick starts nothing; the next tick starts one more.
    assert replicas[0].run_pass(TICK + dt.timedelta(seconds=30)) == []
    assert len(replicas[1].run_pass(TICK + dt.timedelta(minutes=5, seconds=1))) == 1
    assert next(tuple(e.args) for e in harness.outbox(START_WORKFLOW)) == (str(created[0]),)

    start_run(inproc, created[0])
    run = harness.wait_finished(created[0])
    assert (run.phase, run.trigger, run.alert_id) == ("Succeeded", "schedule", None)
    assert harness.steps(created[0])[0].output["stdout"] == f"{TICK.isoformat()} prod\n"
