"""The scheduler's /metrics, served by a real ``punchingfist scheduler`` process.

Three schedule Sources fire every minute: one whose ticks this scheduler starts, one
whose ticks another replica has already taken, one whose cron does not parse. The
scrape counts the ticks by Source and result, the error, and the time of the last
pass; a pass that fails is counted by its exception and leaves that time alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from enginekit import Harness
from prometheus_client import CollectorRegistry

from services.engine import metrics as engine_metrics
from services.engine.scheduler import Scheduler
from shared.db import resources
from shared.db.models import ScheduleTick, WorkflowRun, utcnow
from tests.support import workers
from tests.support.ports import free_port
from tests.support.scrape import Samples, scrape
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)
TICKS = "punchingfist_scheduler_ticks_total"
ERRORS = "punchingfist_scheduler_errors_total"
LAST_SUCCESS = "punchingfist_scheduler_last_success_timestamp_seconds"


class SchedulerProcess(workers.PunchingFistProcess):
    def __init__(self, env: dict[str, str], log_path: Path, url: str) -> None:
        super().__init__(["scheduler"], env, log_path)
        self.url = url

    def scrape(self) -> Samples:
        return wait_for(
            lambda: scrape(self.url), 30, "the scheduler's /metrics", ignoring=(OSError,)
        )


@pytest.fixture
def scheduler(harness: Harness, tmp_path: Path) -> Iterator[SchedulerProcess]:
    port = free_port()
    env = workers.process_env(
        harness.url,
        # The starts it publishes go nowhere: no engine runs here, the runs are counted
        # in the store.
        "memory://",
        tmp_path / "var",
        PF_SCHEDULER_METRICS_BIND=f"127.0.0.1:{port}",
        PF_SCHEDULER_INTERVAL="0.2",
    )
    process = SchedulerProcess(env, tmp_path / "scheduler.log", f"http://127.0.0.1:{port}/metrics")
    yield process
    process.stop()


def put_schedule(harness: Harness, name: str, cron: str) -> None:
    with harness.sessions.begin() as session:
        resources.upsert(
            session,
            "Source",
            "default",
            name,
            {"type": "schedule", "config": {"cron": cron}, "triggerWorkflow": "triage"},
        )


def ticks(samples: Samples, source: str, result: str) -> float:
    return samples.value(TICKS, namespace="default", source=source, result=result)


def stored(harness: Harness, source: str) -> tuple[int, int]:
    """(ticks claimed, runs started) of ``source`` in the store."""
    with harness.engine.connect() as conn:
        claimed = conn.execute(
            sa.select(sa.func.count()).where(ScheduleTick.__table__.c.source_name == source)
        ).scalar_one()
        runs = conn.execute(
            sa.select(sa.func.count()).where(
                WorkflowRun.__table__.c.source_name == source,
                WorkflowRun.__table__.c.trigger == "schedule",
            )
        ).scalar_one()
    return claimed, runs


def test_ticks_by_source_and_result_errors_and_the_last_pass(
    harness: Harness, scheduler: SchedulerProcess
) -> None:
    # Another replica has already claimed this Source's ticks of the next three
    # minutes (the test ends well within them).
    put_schedule(harness, "elsewhere", "* * * * *")
    other = Scheduler(
        harness.sessions,
        None,
        outbox_lease=10,
        metrics=engine_metrics.SchedulerMetrics(CollectorRegistry()),
    )
    now = utcnow()
    for minute in range(3):
        assert len(other.run_pass(now + dt.timedelta(minutes=minute))) == 1
    put_schedule(harness, "here", "* * * * *")
    put_schedule(harness, "broken", "every minute")

    scheduler.start()
    first = wait_for(
        lambda: (
            (s := scheduler.scrape()).value(LAST_SUCCESS) > 0
            and ticks(s, "here", "started") >= 1
            and ticks(s, "elsewhere", "taken") >= 1
            and s
        ),
        30,
        "the scheduler's first ticks to be counted",
    )
    assert first.value(ERRORS, error="ConfigError") >= 1  # the cron that does not parse
    assert first.total(ERRORS) == first.value(ERRORS, error="ConfigError")
    assert ticks(first, "here", "taken") == 0
    assert ticks(first, "elsewhere", "started") == 0
    assert first.total(TICKS, source="broken") == 0

    # What it counted as started is what it wrote (a minute may turn in between, so
    # both are read until they agree).
    wait_for(
        lambda: stored(harness, "here") == (c := ticks(scheduler.scrape(), "here", "started"), c),
        30,
        "the ticks started to match the store",
    )
    assert stored(harness, "elsewhere") == (3, 3)  # the other replica's; none of this one's

    # Later passes within the same minute claim nothing again: a taken tick is
    # counted once, not at every pass (0.2 s apart).
    def settled() -> bool:
        before = scheduler.scrape()
        later = wait_for(
            lambda: (
                (s := scheduler.scrape()).value(LAST_SUCCESS) >= before.value(LAST_SUCCESS) + 1
                and s
            ),
            30,
            "a second of passes",
        )
        if int(before.value(LAST_SUCCESS)) // 60 != int(later.value(LAST_SUCCESS)) // 60:
            return False  # a minute turned: a new tick is due; look again
        assert ticks(later, "elsewhere", "taken") == ticks(before, "elsewhere", "taken")
        assert ticks(later, "here", "started") == ticks(before, "here", "started")
        assert later.value(ERRORS, error="ConfigError") > before.value(ERRORS, error="ConfigError")
        return True

    wait_for(settled, 60, "a second of passes within one minute")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_pass_that_fails_is_counted_and_is_not_a_success(
    harness: Harness, scheduler: SchedulerProcess
) -> None:
    scheduler.start()
    wait_for(lambda: scheduler.scrape().value(LAST_SUCCESS), 30, "a first pass")
    # The table of resources goes away under the running scheduler: every pass fails.
    with harness.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE resources RENAME TO resources_gone")
    failing = wait_for(
        lambda: (s := scheduler.scrape()).value(ERRORS, error="OperationalError") >= 1 and s,
        30,
        "a failed pass to be counted",
    )
    later = wait_for(
        lambda: (
            (s := scheduler.scrape()).value(ERRORS, error="OperationalError")
            >= failing.value(ERRORS, error="OperationalError") + 3
            and s
        ),
        30,
        "more failed passes to be counted",
    )
    assert later.value(LAST_SUCCESS) == failing.value(LAST_SUCCESS) > 0
    assert later.total(TICKS) == 0
    assert "scheduler pass failed" in scheduler.log()
