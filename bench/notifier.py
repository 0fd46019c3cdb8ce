"""Notifier benchmark: deliveries to the Slack stand-in, against bare slack-sdk calls.

Run with ``make bench-notifier`` (or ``python bench/notifier.py --help``). For each
database (SQLite file, PostgreSQL when reachable) it starts one
``punchingfist notifier`` worker (prefork, ``--concurrency``) on Redis and the Slack
Web API stand-in (``services/standins/slack.py``) in this process, and measures:

1. throughput: N finished runs, each with one Slack delivery for its own alert (a
   thread parent), written and published as the engine's last step does; the time
   from the first publish to the last ``Delivered`` gives deliveries per second;
2. added latency: runs ending at a steady rate below capacity (default 20/s); for
   each, the run's ``completed_at`` (the engine's commit) to the moment the Slack
   stand-in stored the message, p50 and p99;
3. the ceiling: bare ``WebClient.chat_postMessage`` calls to the same stand-in, one
   thread and ``--concurrency`` threads, in the same run.

Prints a markdown table; raw figures go to bench/results/notifier.json. Figures are
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
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from bench import databases, processes  # noqa: E402
from services.standins.slack import TOKEN, SlackAPI  # noqa: E402
from shared import settings as settings_module  # noqa: E402
from shared.db import migrate, resources  # noqa: E402
from shared.db.engines import make_engine, make_session_factory  # noqa: E402
from shared.db.models import Alert, SinkDelivery, WorkflowRun, utcnow  # noqa: E402
from shared.queueing import DELIVER, NOTIFIER_QUEUE, make_celery  # noqa: E402
from shared.resources import schemas  # noqa: E402

REDIS_URL = os.environ.get("PF_BENCH_NOTIFIER_REDIS_URL", "redis://127.0.0.1:6379/11")
# Seconds between looks at the delivered count: the throughput is taken when the wait
# for the last delivery returns, so this is part of that figure.
POLL = 0.01
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*PodCrashLooping* `critical`"}}]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Store:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(settings_module.DatabaseSettings(url=url))
        self.sessions = make_session_factory(self.engine)

    def put_sink(self, api_url: str) -> None:
        spec = schemas.normalize(
            "Sink",
            "slack",
            {
                "type": "slack",
                "config": {
                    "channel": "#incidents",
                    "tokenSecretRef": {"name": "slack-bot", "key": "token"},
                    "apiUrl": api_url,
                },
            },
        )
        with self.sessions.begin() as session:
            resources.upsert(session, "Sink", "default", "slack", spec)

    def finish_run(self) -> tuple[uuid.UUID, dt.datetime]:
        """An alert, its finished run and a Pending delivery, committed together."""
        alert_id, run_id, delivery_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        labels = {"alertname": "PodCrashLooping", "severity": "critical", "pod": "web-1"}
        with self.sessions.begin() as session:
            now = utcnow()
            session.execute(
                sa.insert(Alert.__table__).values(
                    id=alert_id,
                    fingerprint=uuid.uuid4().hex[:16],
                    starts_at=now,
                    status="triaging",
                    severity="critical",
                    alert_name="PodCrashLooping",
                    labels=labels,
                    annotations={"summary": "web-1 restarts"},
                    source_name="alertmanager",
                )
            )
            session.execute(
                sa.insert(WorkflowRun.__table__).values(
                    id=run_id,
                    workflow_name="triage",
                    namespace="default",
                    alert_id=alert_id,
                    phase="Succeeded",
                    input_context={},
                    context={"alert": {"labels": labels}},
                    outputs={"summary": "OOMKilled", "rootCause": "limit too low"},
                    started_at=now,
                    completed_at=now,
                    updated_at=now,
                )
            )
            session.execute(
                sa.insert(SinkDelivery.__table__).values(
                    id=delivery_id,
                    run_id=run_id,
                    sink_name="slack",
                    phase="Pending",
                    attempts=0,
                    created_at=now,
                )
            )
        return delivery_id, now

    def delivered(self) -> int:
        table = SinkDelivery.__table__
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.phase == "Delivered")
                ).scalar_one()
            )

    def close(self) -> None:
        self.engine.dispose()


def bare_rate(api: SlackAPI, calls: int, threads: int) -> float:
    """chat.postMessage calls per second with slack-sdk alone against the stand-in."""

    def work(count: int) -> None:
        client = WebClient(token=TOKEN, base_url=api.url, timeout=10)
        for _ in range(count):
            client.chat_postMessage(channel="#incidents", blocks=BLOCKS, text="bench")

    per_thread = calls // threads
    workers = [threading.Thread(target=work, args=(per_thread,)) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


def bench_database(label: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    engine = make_engine(settings_module.DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    secrets = workdir / "secrets" / "slack-bot"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "token").write_text(TOKEN)
    api = SlackAPI(token=TOKEN).start()
    store = Store(url)
    store.put_sink(api.url)
    env = processes.service_env(
        PF_DATABASE_URL=url,
        PF_BROKER_URL=REDIS_URL,
        PF_SECRETS_DIR=str(workdir / "secrets"),
        PF_VAR_DIR=str(workdir / "var"),
        PF_NOTIFIER_CONCURRENCY=str(args.concurrency),
    )
    worker = processes.spawn(
        [sys.executable, "-m", "services.cli", "notifier"], env, workdir / f"notifier-{label}.log"
    )
    sender = make_celery(settings_module.from_env({"PF_BROKER_URL": REDIS_URL}), "bench-sender")
    try:
        # Warm up: the worker is ready and every pool process has its runtime.
        warm = [store.finish_run()[0] for _ in range(args.concurrency * 2)]
        for delivery_id in warm:
            sender.send_task(DELIVER, args=[str(delivery_id)], queue=NOTIFIER_QUEUE)
        processes.wait_until(
            lambda: store.delivered() >= len(warm), 120, "warm-up deliveries", POLL
        )
        base = store.delivered()

        # 1. throughput
        ids = [store.finish_run()[0] for _ in range(args.deliveries)]
        started = time.perf_counter()
        with sender.producer_or_acquire() as producer:
            for delivery_id in ids:
                sender.send_task(
                    DELIVER, args=[str(delivery_id)], queue=NOTIFIER_QUEUE, producer=producer
                )
        processes.wait_until(
            lambda: store.delivered() >= base + len(ids), 600, "throughput deliveries", POLL
        )
        throughput = len(ids) / (time.perf_counter() - started)

        # 2. added latency at a steady rate
        before = {m["ts"] for m in api.messages()}
        ended: dict[str, dt.datetime] = {}
        interval = 1.0 / args.rate
        next_at = time.perf_counter()
        for _ in range(args.latency_runs):
            delivery_id, completed = store.finish_run()
            sender.send_task(DELIVER, args=[str(delivery_id)], queue=NOTIFIER_QUEUE)
            ended[str(delivery_id)] = completed
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        total = base + len(ids) + args.latency_runs
        processes.wait_until(lambda: store.delivered() >= total, 300, "latency deliveries", POLL)
        latencies = []
        for message in api.messages():
            if message["ts"] in before:
                continue
            delivery = message["metadata"]["event_payload"]["delivery_id"]
            if delivery in ended:
                latencies.append((message["received_at"] - ended[delivery].timestamp()) * 1000)

        # 3. the ceiling: slack-sdk alone, same stand-in
        bare_one = bare_rate(api, args.bare_calls, 1)
        bare_many = bare_rate(api, args.bare_calls, args.concurrency)
        return {
            "database": label,
            "concurrency": args.concurrency,
            "deliveries": len(ids),
            "deliveries_per_s": round(throughput, 1),
            "latency_rate_per_s": args.rate,
            "latency_p50_ms": round(statistics.median(latencies), 1),
            "latency_p99_ms": round(percentile(latencies, 99), 1),
            "bare_sdk_calls_per_s_1_thread": round(bare_one, 1),
            f"bare_sdk_calls_per_s_{args.concurrency}_threads": round(bare_many, 1),
        }
    finally:
        processes.stop(worker)
        api.stop()
        store.close()
        client.flushdb()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=500, help="throughput deliveries")
    parser.add_argument("--latency-runs", type=int, default=200, help="runs for the latency")
    parser.add_argument("--rate", type=float, default=20.0, help="runs ending per second")
    parser.add_argument("--concurrency", type=int, default=4, help="notifier pool processes")
    parser.add_argument("--bare-calls", type=int, default=1000, help="bare slack-sdk calls")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results.append(bench_database("SQLite", f"sqlite:///{workdir}/bench.db", args, workdir))
        if not args.sqlite_only:
            try:
                url = databases.create("notifier_")
            except sa.exc.OperationalError:
                pass  # no PostgreSQL here: the SQLite figures alone
            else:
                try:
                    results.append(bench_database("PostgreSQL", url, args, workdir))
                finally:
                    databases.drop(url)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "notifier.json").write_text(json.dumps(results, indent=2))
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in results:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
