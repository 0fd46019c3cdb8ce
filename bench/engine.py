"""Engine benchmark: workflow runs on real Redis against a bare Celery chain.

Run with ``make bench-engine`` (or ``python bench/engine.py --help``). For each
database (SQLite file, PostgreSQL when reachable) it starts ``punchingfist engine``
(prefork) on Redis database 12 and measures:

1. cold start: worker process spawned -> first step running, with a start already
   queued;
2. alert accepted -> first step running, at a steady rate (default 100 alerts/s):
   each alert is written the way ingest writes it (alert + Pending run in one
   transaction), committed, and its ``engine.start_workflows`` message published;
   "accepted" is the commit, "running" is the step's ``started_at`` as the worker
   claimed it (same host clock);
3. a Workflow of 5 conditional steps that always pass, run one at a time: time
   from publishing the start to the run's ``completed_at``, against a bare Celery
   chain of 5 no-op tasks on an identical worker (same app options, same Redis).

Prints a markdown table; raw figures go to bench/results/engine.json. Figures are
reported, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from celery import Celery, chain  # noqa: E402

from bench import databases, processes  # noqa: E402
from shared import settings as settings_module  # noqa: E402
from shared.db import migrate, resources  # noqa: E402
from shared.db.engines import make_engine, make_session_factory  # noqa: E402
from shared.db.models import Alert, StepRun, WorkflowRun, utcnow  # noqa: E402
from shared.queueing import ENGINE_QUEUE, START_WORKFLOWS, make_celery  # noqa: E402

REDIS_URL = os.environ.get("PF_BENCH_ENGINE_REDIS_URL", "redis://127.0.0.1:6379/12")
BARE_QUEUE = "bare"
# Seconds between looks at the database or Redis while waiting. The figures come from
# timestamps the worker writes, not from when this process notices them, but the
# polling loads the two cores the worker runs on: it stays what it was when measured.
POLL = 0.001


def _bare_app() -> Celery:
    """The same Celery options as the engine (shared factory), with one no-op task."""
    config = settings_module.from_env({"PF_BROKER_URL": REDIS_URL})
    app = make_celery(config, name="bench-bare")

    @app.task(name="bench.noop", bind=True)
    def noop(self: Any, token: str | None = None) -> None:
        if token is not None:  # the last link records when the chain ended
            client = redis.Redis.from_url(REDIS_URL)
            client.set(f"bench:done:{token}", repr(time.time()))
            client.close()

    return app


bare_app = _bare_app()

# The caps stay on (their queries are part of every start) but high enough that a
# burst at 100 alerts/s is not Skipped.
LIMITS = {"maxConcurrentRuns": 100000, "maxRunsPerFingerprint": 1}
ONE_STEP = {"steps": [{"name": "first", "type": "cli", "command": ["true"]}], "limits": LIMITS}
FIVE_CONDITIONALS = {
    "steps": [
        {"name": f"c{i}", "type": "conditional", "condition": "alert.severity == 'critical'"}
        for i in range(5)
    ],
    "limits": LIMITS,
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(settings_module.DatabaseSettings(url=url))
        self.sessions = make_session_factory(self.engine)

    def add_run(self, workflow: str) -> uuid.UUID:
        now = utcnow()
        alert_id, run_id = uuid.uuid4(), uuid.uuid4()
        fingerprint = uuid.uuid4().hex[:16]
        labels = {"alertname": "Bench", "severity": "critical"}
        with self.sessions.begin() as session:
            session.execute(
                sa.insert(Alert.__table__).values(
                    id=alert_id,
                    fingerprint=fingerprint,
                    starts_at=now,
                    status="received",
                    severity="critical",
                    alert_name="Bench",
                    labels=labels,
                    annotations={},
                    source_name="bench",
                )
            )
            session.execute(
                sa.insert(WorkflowRun.__table__).values(
                    id=run_id,
                    workflow_name=workflow,
                    namespace="default",
                    source_name="bench",
                    alert_id=alert_id,
                    phase="Pending",
                    # As ingest writes it: the per-fingerprint cap reads the column.
                    fingerprint=fingerprint,
                    input_context={
                        "alert": {
                            "labels": labels,
                            "severity": "critical",
                            "fingerprint": fingerprint,
                        },
                        "source": {"name": "bench", "namespace": "default", "context": {}},
                    },
                    context={},
                )
            )
        return run_id

    def first_step_started(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, dt.datetime]:
        table = StepRun.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.run_id, table.c.started_at).where(
                    table.c.run_id.in_(run_ids), table.c.index == 0, table.c.started_at.is_not(None)
                )
            ).all()
        return {row.run_id: row.started_at for row in rows}

    def completed(self, run_id: uuid.UUID) -> Any:
        table = WorkflowRun.__table__
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(table.c.phase, table.c.completed_at, table.c.error).where(
                    table.c.id == run_id
                )
            ).first()


def bench_database(label: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    print(f"## {label}", file=sys.stderr)
    migrate.upgrade(make_engine(settings_module.DatabaseSettings(url=url)))
    store = Store(url)
    with store.sessions.begin() as session:
        resources.upsert(session, "Workflow", "default", "one-step", ONE_STEP)
        resources.upsert(session, "Workflow", "default", "five", FIVE_CONDITIONALS)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    config = settings_module.from_env({"PF_BROKER_URL": REDIS_URL, "PF_DATABASE_URL": url})
    sender = make_celery(config, name="bench-sender")
    env = processes.service_env(
        PF_DATABASE_URL=url,
        PF_BROKER_URL=REDIS_URL,
        PF_VAR_DIR=str(workdir / "var"),
        PF_ENGINE_CONCURRENCY=str(args.concurrency),
        # The bare-chain worker imports this module: it must use the same Redis.
        PF_BENCH_ENGINE_REDIS_URL=REDIS_URL,
    )

    def publish(run_ids: list[uuid.UUID]) -> None:
        sender.send_task(START_WORKFLOWS, args=[[str(r) for r in run_ids]], queue=ENGINE_QUEUE)

    # 1. cold start: a start is waiting when the worker process is spawned.
    cold_run = store.add_run("one-step")
    publish([cold_run])
    spawned = utcnow()
    worker = processes.spawn(
        [sys.executable, "-m", "services.cli", "engine"], env, workdir / f"engine-{label}.log"
    )
    try:
        started = processes.wait_until(
            lambda: store.first_step_started([cold_run]).get(cold_run), 60, "cold start", POLL
        )
        cold = (started - spawned).total_seconds() * 1000
        time.sleep(1.0)  # let every pool process finish starting

        # 2. alert accepted -> first step running, at a steady rate.
        accepted: dict[uuid.UUID, dt.datetime] = {}
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        for _ in range(int(args.rate * args.seconds)):
            run_id = store.add_run("one-step")
            accepted[run_id] = utcnow()
            publish([run_id])
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        achieved = len(accepted) / (time.monotonic() - (next_at - len(accepted) * interval))
        ids = list(accepted)
        processes.wait_until(
            lambda: len(store.first_step_started(ids)) == len(ids), 120, "first steps", POLL
        )
        started_at = store.first_step_started(ids)
        latencies = [(started_at[r] - accepted[r]).total_seconds() * 1000 for r in ids]

        # 3. five conditional steps, one run at a time.
        processes.wait_until(lambda: client.llen(ENGINE_QUEUE) == 0, 60, "queue drain", POLL)
        time.sleep(1.0)
        totals = []
        for _ in range(args.chains):
            run_id = store.add_run("five")
            sent = utcnow()
            publish([run_id])
            row = processes.wait_until(
                lambda run_id=run_id: (r := store.completed(run_id)) and r.completed_at and r,
                30,
                "five-step run",
                POLL,
            )
            if row.phase != "Succeeded":
                raise SystemExit(f"five-step run ended {row.phase}: {row.error}")
            totals.append((row.completed_at - sent).total_seconds() * 1000)
    finally:
        processes.stop(worker)

    # The bare chain: an identical prefork worker, 5 no-op tasks.
    bare = processes.spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.engine:bare_app",
            "worker",
            "--queues",
            BARE_QUEUE,
            "--concurrency",
            str(args.concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        workdir / f"bare-{label}.log",
    )
    bare_totals = []
    try:
        for i in range(args.chains + 5):
            token = uuid.uuid4().hex
            links = [
                bare_app.signature("bench.noop", queue=BARE_QUEUE, immutable=True) for _ in range(4)
            ]
            links.append(
                bare_app.signature(
                    "bench.noop", kwargs={"token": token}, queue=BARE_QUEUE, immutable=True
                )
            )
            sent_at = time.time()
            chain(*links, app=bare_app).apply_async()
            done = processes.wait_until(
                lambda token=token: client.get(f"bench:done:{token}"), 30, "bare chain", POLL
            )
            if i >= 5:  # the first chains warm the pool up
                bare_totals.append((float(done) - sent_at) * 1000)
    finally:
        processes.stop(bare)
        client.flushdb()
        client.close()
    result = {
        "database": label,
        "cold_start_ms": round(cold, 1),
        "rate_target": args.rate,
        "rate_achieved": round(achieved, 1),
        "alerts": len(latencies),
        "first_step_p50_ms": round(percentile(latencies, 50), 2),
        "first_step_p99_ms": round(percentile(latencies, 99), 2),
        "first_step_max_ms": round(max(latencies), 2),
        "five_steps_p50_ms": round(statistics.median(totals), 2),
        "bare_chain5_p50_ms": round(statistics.median(bare_totals), 2),
    }
    result["per_step_ms"] = round(result["five_steps_p50_ms"] / 5, 2)
    result["bare_per_step_ms"] = round(result["bare_chain5_p50_ms"] / 5, 2)
    result["ratio_per_step"] = round(result["per_step_ms"] / result["bare_per_step_ms"], 2)
    print(json.dumps(result), file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="alerts per second (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of load (default 10)")
    parser.add_argument(
        "--chains", type=int, default=50, help="five-step runs and bare chains (default 50)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="pf-bench-engine-") as tmp:
        workdir = Path(tmp)
        results.append(bench_database("sqlite", f"sqlite:///{workdir}/bench.db", args, workdir))
        if not args.sqlite_only:
            try:
                url = databases.create()
            except sa.exc.OperationalError as exc:
                print(f"PostgreSQL not reachable, skipped: {exc}", file=sys.stderr)
            else:
                try:
                    results.append(bench_database("postgresql", url, args, workdir))
                finally:
                    databases.drop(url)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine.json").write_text(json.dumps(results, indent=2))
    print(
        "| database | cold start -> first task | alert -> first step p50 / p99 (max) "
        "| 5 steps p50 | bare chain of 5 p50 | per step vs bare |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['database']} | {r['cold_start_ms']:.0f} ms "
            f"| {r['first_step_p50_ms']} / {r['first_step_p99_ms']} ({r['first_step_max_ms']}) ms "
            f"at {r['rate_achieved']}/s "
            f"| {r['five_steps_p50_ms']} ms | {r['bare_chain5_p50_ms']} ms "
            f"| {r['per_step_ms']} vs {r['bare_per_step_ms']} ms = {r['ratio_per_step']}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
