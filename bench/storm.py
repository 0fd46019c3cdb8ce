"""Alert storm: thousands of AlertManager notifications over a few alerts, end to end.

Run with ``make bench-storm`` (or ``python bench/storm.py --help``). For each database
(PostgreSQL, the realistic deployment, and SQLite) it starts, on loopback: a private
``redis-server`` (unless ``--redis-url``), ``punchingfist ingest`` (gunicorn, default
workers) and one ``punchingfist engine`` worker (default pool), stores a bearer-token
Source and a Workflow shaped like the ``make run`` one (a command, a rule-based
investigation, a conditional, a command), and posts ``--notifications`` webhooks,
``--connections`` at a time, in the shape AlertManager sends them:

- the ``--fingerprints`` alerts fall into groups of ``--group-size`` (one alertname
  and namespace each, ``group_by: [alertname, namespace]``); each notification carries
  the group's ``groupKey``, ``groupLabels``, ``commonLabels`` / ``commonAnnotations``
  (what all its alerts share), ``externalURL``, ``version: "4"`` and the alerts with
  their ``fingerprint`` (a 64-bit hash of the label set), ``startsAt``, ``status:
  firing``;
- a group's first notifications grow as its alerts start firing (group_interval),
  then repeat the whole group (repeat_interval); the groups take turns;
- every notification is sent by ``--replicas`` AlertManagers at once (an HA pair
  notifies independently when its gossip lags), so identical first notifications
  race each other into ingest.

It then waits until every run has finished, and checks (correctness, not speed: the
script says so loudly and exits 1 when one fails) that exactly one alert and one run
exist per fingerprint, that every run succeeded, that every notification was answered
2xx and that no re-notification was lost (the alerts' ``times_seen`` add up to the
alerts posted). Reported, never asserted: ingest latency p50/p95/p99 per
notification, notifications/s while posting, and the time from the first post until
the last run finished. Raw figures go to ``--out`` (bench/results/storm.json).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import databases, loadgen, processes  # noqa: E402

TOKEN = "storm-token"
SOURCE = "alertmanager"
WORKFLOW = "storm-triage"
ALERT_NAMES = (
    "KubePodCrashLooping",
    "HighCPUUsage",
    "KubePodNotReady",
    "KubeContainerWaiting",
    "HighMemoryUsage",
    "KubeDeploymentReplicasMismatch",
    "TargetDown",
    "KubeJobFailed",
)
# The `make run` Workflow (examples/triage-basic-workflow.yaml) without its Sink: the
# run ends when the engine is done, which is what the storm waits for. No cap on runs
# at once: the default (10) would Skip 90 of the storm's 100 starts, which is that
# limit working, not what this benchmark measures.
WORKFLOW_SPEC: dict[str, Any] = {
    "steps": [
        {"name": "record", "type": "cli", "command": ["date", "-u"], "timeoutSeconds": 10},
        {
            "name": "investigate",
            "type": "agent",
            "goal": "Find out why {{ alert.labels.alertname }} fired.",
            "tools": ["kubectl"],
            "timeout": "2m",
        },
        {
            "name": "is-critical",
            "type": "conditional",
            "condition": 'alert.labels.severity == "critical"',
            "then": {"run": ["escalate"]},
            "else": {"skip": ["escalate"]},
        },
        {
            "name": "escalate",
            "type": "cli",
            "command": ["echo", "{{ steps.investigate.output.summary }}"],
            "timeoutSeconds": 10,
        },
    ],
    "limits": {"maxConcurrentRuns": 0},
}


# --- the notifications (no I/O) ----------------------------------------------------


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits from the sorted label set, as AlertManager derives its fingerprint
    (it uses FNV-64a; any stable 64-bit hash of the labels has the same shape)."""
    text = "\xff".join(f"{name}\xff{labels[name]}" for name in sorted(labels))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _groups(fingerprints: int, group_size: int, starts_at: dt.datetime) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for index in range(0, fingerprints, group_size):
        number = index // group_size
        group_labels = {
            "alertname": ALERT_NAMES[number % len(ALERT_NAMES)],
            "namespace": f"team-{number}",
        }
        alerts = []
        for member in range(min(group_size, fingerprints - index)):
            labels = {
                **group_labels,
                "pod": f"api-{number}-{member}",
                "severity": "critical" if member % 2 == 0 else "warning",
                "job": "kube-state-metrics",
            }
            started = starts_at + dt.timedelta(seconds=member)
            alerts.append(
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {
                        "summary": f"{labels['alertname']} on {labels['pod']}",
                        "runbook_url": f"https://runbooks.example/{labels['alertname']}",
                    },
                    "startsAt": started.isoformat().replace("+00:00", "Z"),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                    "fingerprint": fingerprint(labels),
                }
            )
        key = ", ".join(f'{name}="{value}"' for name, value in group_labels.items())
        groups.append({"labels": group_labels, "key": f"{{}}:{{{key}}}", "alerts": alerts})
    return groups


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(other.get(k) == v for other in rest)}


def notifications(
    total: int,
    fingerprints: int,
    group_size: int,
    replicas: int,
    starts_at: dt.datetime,
) -> list[dict[str, Any]]:
    """``total`` webhook bodies over ``fingerprints`` alerts, in the order sent."""
    groups = _groups(fingerprints, group_size, starts_at)
    bodies: list[dict[str, Any]] = []
    sent = 0
    while len(bodies) < total:
        group = groups[sent % len(groups)]
        # The group's n-th notification: its first n+1 alerts have started firing.
        round_ = sent // len(groups)
        alerts = group["alerts"][: round_ + 1]
        body = {
            "receiver": "punchingfist",
            "status": "firing",
            "alerts": alerts,
            "groupLabels": group["labels"],
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": "http://alertmanager:9093",
            "version": "4",
            "groupKey": group["key"],
            "truncatedAlerts": 0,
        }
        bodies.extend([body] * min(replicas, total - len(bodies)))
        sent += 1
    return bodies


# --- one backend ---------------------------------------------------------------------


def prepare(url: str) -> None:
    """Schema at head, the Source and the Workflow stored as the controller stores them."""
    from shared.db import migrate, resources
    from shared.db.engines import make_engine, make_session_factory
    from shared.resources import schemas
    from shared.settings import DatabaseSettings

    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    source = {
        "type": "webhook",
        "config": {
            "path": f"/webhook/{SOURCE}",
            "authentication": {"type": "bearer", "secretRef": {"name": "am", "key": "token"}},
            # Above the storm's starts, so that the cap (100 a minute by default) does
            # not decide the count this benchmark checks.
            "rateLimit": {"maxWorkflowStarts": 1_000_000, "windowSeconds": 60},
        },
        "triggerWorkflow": WORKFLOW,
        "context": {"cluster": "storm"},
    }
    with make_session_factory(engine).begin() as session:
        resources.upsert(
            session, "Source", "default", SOURCE, schemas.normalize("Source", SOURCE, source)
        )
        resources.upsert(
            session,
            "Workflow",
            "default",
            WORKFLOW,
            schemas.normalize("Workflow", WORKFLOW, WORKFLOW_SPEC),
        )
    engine.dispose()


def tally(engine: Any) -> dict[str, Any]:
    """What the database holds: alerts, times seen, runs by phase, first and last run."""
    import sqlalchemy as sa

    from shared.db.models import Alert, WorkflowRun

    alerts, runs = Alert.__table__, WorkflowRun.__table__
    with engine.connect() as conn:
        alert_count, seen = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(alerts.c.times_seen), 0))
        ).one()
        phases = dict(
            conn.execute(sa.select(runs.c.phase, sa.func.count()).group_by(runs.c.phase)).all()
        )
        per_fingerprint = conn.execute(
            sa.select(sa.func.count(sa.distinct(runs.c.fingerprint)))
        ).scalar_one()
        last_end = conn.execute(sa.select(sa.func.max(runs.c.completed_at))).scalar_one()
        first_start = conn.execute(sa.select(sa.func.min(runs.c.started_at))).scalar_one()
    return {
        "alerts": int(alert_count),
        "times_seen": int(seen),
        "runs": sum(phases.values()),
        "run_fingerprints": int(per_fingerprint),
        "phases": {str(k): int(v) for k, v in phases.items()},
        "first_run_started_at": first_start,
        "last_run_completed_at": last_end,
    }


def _finished(state: dict[str, Any], expected: int) -> dict[str, Any] | None:
    """``state`` once every run has finished, else None."""
    from shared.domain.runs import FINISHED_RUN

    done = sum(n for phase, n in state["phases"].items() if phase in FINISHED_RUN)
    # At least the expected count: a storm that made too many runs must end too, so
    # that the check below reports it instead of a timeout.
    return state if state["runs"] >= expected and done == state["runs"] else None


def storm(backend: str, args: argparse.Namespace, broker: str, workdir: Path) -> dict[str, Any]:
    from shared.db.models import utcnow

    print(f"## storm on {backend}", file=sys.stderr)
    here = workdir / backend
    (here / "secrets" / "am").mkdir(parents=True)
    (here / "secrets" / "am" / "token").write_text(TOKEN)
    url = f"sqlite:///{here}/storm.db" if backend == "sqlite" else databases.create("storm_")
    ingest = engine = database = None
    try:
        prepare(url)
        import redis

        redis.Redis.from_url(broker).flushdb()
        env = processes.service_env(
            PF_DATABASE_URL=url,
            PF_BROKER_URL=broker,
            PF_SECRETS_DIR=str(here / "secrets"),
            PF_VAR_DIR=str(here / "var"),
        )
        # The engine starts while ingest does; both are up before the first post.
        engine = processes.spawn(
            [sys.executable, "-m", "services.cli", "engine"], env, here / "engine.log"
        )
        ingest, port = processes.start_ingest(env, here / "ingest.log")
        _wait_engine(env, here)

        started_at = utcnow()
        bodies = notifications(
            args.notifications, args.fingerprints, args.group_size, args.replicas, started_at
        )
        payloads = [json.dumps(body).encode() for body in bodies]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        posting_began = utcnow()
        result = loadgen.batch(
            "127.0.0.1", port, f"/webhook/{SOURCE}", payloads, headers, args.connections
        )
        posted_at = utcnow()
        from shared.db.engines import make_engine
        from shared.settings import DatabaseSettings

        database = make_engine(DatabaseSettings(url=url))
        try:
            state = processes.wait_until(
                lambda: _finished(tally(database), args.fingerprints),
                args.timeout,
                "every run to finish",
                interval=0.2,
            )
            timed_out = False
        except TimeoutError as exc:
            print(f"!! {exc}", file=sys.stderr)
            state, timed_out = tally(database), True
    finally:
        if database is not None:
            database.dispose()
        for process in (ingest, engine):
            if process is not None:
                processes.stop(process)
        databases.drop(url)

    alerts_posted = sum(len(body["alerts"]) for body in bodies)
    non_2xx = sum(n for status, n in result.statuses.items() if not 200 <= status < 300)
    checks = [
        ("runs created", args.fingerprints, state["runs"]),
        ("alerts recorded", args.fingerprints, state["alerts"]),
        ("fingerprints with a run", args.fingerprints, state["run_fingerprints"]),
        ("runs Succeeded", args.fingerprints, state["phases"].get("Succeeded", 0)),
        ("notifications answered 2xx", len(payloads), len(payloads) - result.errors - non_2xx),
        ("alerts seen (sum of times_seen)", alerts_posted, state["times_seen"]),
    ]
    last_end = state["last_run_completed_at"]
    return {
        "database": "PostgreSQL" if backend == "postgresql" else "SQLite",
        "notifications": len(payloads),
        "fingerprints": args.fingerprints,
        "group_size": args.group_size,
        "replicas": args.replicas,
        "connections": args.connections,
        "alerts_posted": alerts_posted,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "connection_errors": result.errors,
        "ingest_p50_ms": round(result.p50, 2),
        "ingest_p95_ms": round(result.p95, 2),
        "ingest_p99_ms": round(result.p99, 2),
        "ingest_max_ms": round(max(result.latencies_ms, default=float("nan")), 2),
        "posting_seconds": round(result.seconds, 2),
        "notifications_per_s": round(result.rate, 1),
        "first_run_started_s": (
            None
            if state["first_run_started_at"] is None
            else _seconds(posting_began, state["first_run_started_at"])
        ),
        "all_runs_finished_s": (
            None if timed_out or last_end is None else _seconds(posting_began, last_end)
        ),
        "last_run_after_last_post_s": (
            None if timed_out or last_end is None else _seconds(posted_at, last_end)
        ),
        "timed_out": timed_out,
        "phases": state["phases"],
        "checks": [
            {"check": name, "expected": want, "actual": got, "ok": want == got}
            for name, want, got in checks
        ],
    }


def _seconds(start: dt.datetime, end: dt.datetime) -> float:
    return round((end - start).total_seconds(), 2)


def _wait_engine(env: dict[str, str], here: Path) -> None:
    """Until the engine worker answers a Celery ping: the storm measures a running
    worker, not its cold start (bench/engine.py measures that)."""
    from shared import settings as settings_module
    from shared.queueing import make_celery

    app = make_celery(settings_module.from_env(env), name="storm-probe")
    try:
        processes.wait_until(
            lambda: app.control.ping(timeout=0.5), 60, f"engine worker ({here}/engine.log)"
        )
    finally:
        app.close()


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| database | notifications | runs | ingest p50 / p95 / p99 ms | notifications/s "
        "| first post -> all runs finished | checks |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        failed = [c["check"] for c in r["checks"] if not c["ok"]]
        finished = r["all_runs_finished_s"]
        lines.append(
            f"| {r['database']} | {r['notifications']:,} "
            f"| {', '.join(f'{n} {phase}' for phase, n in r['phases'].items()) or 'none'} "
            f"| {r['ingest_p50_ms']} / {r['ingest_p95_ms']} / {r['ingest_p99_ms']} "
            f"| {r['notifications_per_s']} "
            f"| {'timed out' if finished is None else f'{finished} s'} "
            f"| {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=10_000, help="webhooks to post")
    parser.add_argument("--fingerprints", type=int, default=100, help="distinct alerts")
    parser.add_argument("--group-size", type=int, default=5, help="alerts per AlertManager group")
    parser.add_argument("--replicas", type=int, default=2, help="AlertManagers sending each")
    parser.add_argument("--connections", type=int, default=16, help="notifications in flight")
    parser.add_argument("--backends", default="postgresql,sqlite", help="comma-separated")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the runs to finish"
    )
    parser.add_argument(
        "--redis-url", help="broker to use (flushed!); default: a private redis-server"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "storm.json", help="raw figures"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="pf-storm-") as tmp:
        workdir = Path(tmp)
        try:
            with contextlib.ExitStack() as stack:
                broker = args.redis_url or stack.enter_context(processes.private_redis(workdir))
                for backend in args.backends.split(","):
                    results.append(storm(backend.strip(), args, broker, workdir))
        except BaseException:
            print(f"!! storm broke off; logs kept in {keep_logs(workdir)}", file=sys.stderr)
            raise
        failed = [(r["database"], c) for r in results for c in r["checks"] if not c["ok"]]
        kept = keep_logs(workdir) if failed else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": _jsonable(vars(args)), "results": results}, indent=2))
    print(report(results))
    if failed:
        print(file=sys.stderr)
        print("!" * 78, file=sys.stderr)
        print("!! STORM CORRECTNESS CHECK FAILED (this is not about speed):", file=sys.stderr)
        for database, check in failed:
            print(
                f"!!   {database}: {check['check']}: expected {check['expected']}, "
                f"got {check['actual']}",
                file=sys.stderr,
            )
        print(f"!! logs kept in {kept}", file=sys.stderr)
        print("!" * 78, file=sys.stderr)
        return 1
    return 0


def keep_logs(workdir: Path) -> Path:
    """Copy the processes' logs out of the folder about to be removed."""
    kept = Path(tempfile.mkdtemp(prefix="pf-storm-logs-"))
    for log in workdir.glob("**/*.log"):
        shutil.copy(log, kept / f"{log.parent.name}-{log.name}")
    return kept


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


if __name__ == "__main__":
    sys.exit(main())
