"""Ingest benchmark: the real API under gunicorn against a bare Flask endpoint.

Run with ``make bench-ingest`` (or ``python bench/ingest.py --help``). It starts, on
loopback: the bare endpoint (gunicorn + Flask, parses the JSON only) and then, for
SQLite and PostgreSQL, ``punchingfist ingest`` with real Redis as the broker, and
drives each with the asyncio load generator in ``bench/loadgen.py``. The load
generator shares the machine's cores with the server; that is part of the figure.
Prints a markdown table; raw figures go to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import databases, loadgen, processes  # noqa: E402

TOKEN = "bench-token"
FIXTURE = ROOT / "tests" / "fixtures" / "alertmanager" / "01-firing-single.json"
# Emptied before each scenario: a database of its own (PF_BENCH_REDIS_URL to choose).
REDIS_URL = os.environ.get("PF_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


class Payloads:
    """Webhook bodies whose alerts are all new occurrences (unique fingerprints)."""

    def __init__(self, alerts_per_webhook: int, run_tag: int) -> None:
        base = json.loads(FIXTURE.read_text())
        alert = base["alerts"][0]
        alert["labels"]["pod"] = "@POD@"
        alert["fingerprint"] = "@FP@"
        base["alerts"] = [alert]
        text = json.dumps(base)
        head, _, tail = text.partition(json.dumps(alert))
        self._head, self._alert, self._tail = head, json.dumps(alert), tail
        self._count = alerts_per_webhook
        self._tag = run_tag

    def body(self, index: int) -> bytes:
        alerts = []
        for k in range(self._count):
            serial = (self._tag << 40) | (index << 8) | k
            alerts.append(
                self._alert.replace("@POD@", f"pod-{index}-{k}").replace("@FP@", f"{serial:016x}")
            )
        return (self._head + ", ".join(alerts) + self._tail).encode()


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def prepare_database(backend: str, workdir: Path) -> str:
    from shared.db import migrate, resources
    from shared.db.engines import make_engine, make_session_factory
    from shared.settings import DatabaseSettings

    url = f"sqlite:///{workdir}/bench.db" if backend == "sqlite" else databases.create()
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    spec = {
        "type": "webhook",
        "config": {
            "path": "/webhook/bench",
            "authentication": {"type": "bearer", "secretRef": {"name": "bench", "key": "token"}},
            "rateLimit": {"maxWorkflowStarts": 1_000_000_000, "windowSeconds": 60},
        },
        "triggerWorkflow": "triage",
        "context": {},
    }
    with make_session_factory(engine).begin() as session:
        resources.upsert(session, "Source", "default", "bench", spec)
    engine.dispose()
    return url


def analyze(url: str) -> None:
    """Refresh planner statistics, as autovacuum does on a live database within a
    minute. Without it, PostgreSQL plans the dedup probe for the empty tables of the
    start of the run: the duplicate scenario measured 10.8 ms p50 then, 5.2 ms after."""
    from shared.db.engines import make_engine
    from shared.settings import DatabaseSettings

    engine = make_engine(DatabaseSettings(url=url))
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


def row(name: str, result: loadgen.Result, alerts: int) -> dict[str, Any]:
    return {
        "scenario": name,
        "requests": result.requests,
        "errors": result.errors,
        "statuses": result.statuses,
        "req_per_s": round(result.rate, 1),
        "alerts_per_s": round(result.rate * alerts, 1),
        "p50_ms": round(result.p50, 2),
        "p99_ms": round(result.p99, 2),
    }


def bench_bare(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    port = processes.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(args.workers),
        "-k",
        "sync",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "bench.bare_app:app",
    ]
    headers = {"Content-Type": "application/json"}
    url, first = f"http://127.0.0.1:{port}/webhook/bench", Payloads(1, 0).body(0)
    server = processes.start(
        argv, env, workdir / "bare.log", lambda: processes.answers(url, first, headers), "bare"
    )
    rows = []
    try:
        for size in (3, 50):
            payloads = Payloads(size, 1)
            result = loadgen.closed_loop(
                "127.0.0.1",
                port,
                "/webhook/bench",
                payloads.body,
                headers,
                args.connections,
                args.seconds,
            )
            rows.append(row(f"bare {size}-alert", result, size))
    finally:
        processes.stop(server)
    return rows


def bench_ingest(backend: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    url = prepare_database(backend, workdir)
    secrets = workdir / "secrets" / "bench"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "token").write_text(TOKEN)
    flush_redis()
    env = {
        **os.environ,
        "PF_DATABASE_URL": url,
        "PF_BROKER_URL": REDIS_URL,
        "PF_SECRETS_DIR": str(workdir / "secrets"),
        "PF_VAR_DIR": str(workdir / "var"),
        "PF_INGEST_WORKERS": str(args.workers),
    }
    server, port = processes.start_ingest(env, workdir / f"ingest-{backend}.log")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    rows = []
    tag = 2
    try:
        for size in (3, 50):
            tag += 1
            result = loadgen.closed_loop(
                "127.0.0.1",
                port,
                "/webhook/bench",
                Payloads(size, tag).body,
                headers,
                args.connections,
                args.seconds,
            )
            rows.append(row(f"{backend} full {size}-alert", result, size))
            flush_redis()
            analyze(url)
        # The target rate, and a third of it: what latency looks like below capacity.
        for rate in (args.rate, args.rate / 3):
            tag += 1
            result = loadgen.open_loop(
                "127.0.0.1",
                port,
                "/webhook/bench",
                Payloads(3, tag).body,
                headers,
                rate,
                args.seconds,
            )
            rows.append(row(f"{backend} 3-alert at {rate:g}/s (open loop)", result, 3))
            analyze(url)
        tag += 1
        repeated = Payloads(3, tag).body(1)
        result = loadgen.closed_loop(
            "127.0.0.1",
            port,
            "/webhook/bench",
            lambda _i: repeated,
            headers,
            1,
            min(args.seconds, 5),
        )
        rows.append(row(f"{backend} duplicate 3-alert (1 conn)", result, 3))
    finally:
        processes.stop(server)
        databases.drop(url)
        flush_redis()
    return rows


def bench_million(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """1,000,000 alerts in SQLite: dedup lookup and list API latency, with query plans."""
    import sqlalchemy as sa

    from services.ingest import intake
    from shared.db.engines import make_engine, make_session_factory
    from shared.domain.webhooks import parse_notification
    from shared.settings import DatabaseSettings

    url = prepare_database("sqlite", workdir / "million")
    path = url.removeprefix("sqlite:///")
    started = time.perf_counter()
    _fill_alerts(path, args.million)
    fill_seconds = time.perf_counter() - started

    engine = make_engine(DatabaseSettings(url=url))
    sessions = make_session_factory(engine)
    base = json.loads(FIXTURE.read_text())
    lookups = []
    for probe in range(args.probes):
        n = (probe * 7919) % args.million
        base["alerts"][0]["fingerprint"] = f"{n:016x}"
        note = parse_notification(base)
        with sessions() as session:
            t0 = time.perf_counter()
            intake._known_occurrences(session, "bench", list(note.alerts))
            lookups.append((time.perf_counter() - t0) * 1000)
    with engine.connect() as conn:
        dedup_plan = [
            r[-1]
            for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM alerts WHERE source_name='bench' "
                "AND fingerprint IN ('0000000000000001') AND starts_at IN ('2026-11-26 04:02:39.580783')"
            )
        ]
        list_plan = [
            r[-1]
            for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM alerts ORDER BY received_at DESC, id DESC LIMIT 51"
            )
        ]
        status_plan = [
            r[-1]
            for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM alerts WHERE status='received' "
                "ORDER BY received_at DESC, id DESC LIMIT 51"
            )
        ]
    engine.dispose()

    from services.ingest.app import create_app
    from shared.settings import from_env

    token_file = workdir / "api-token"
    token_file.write_text("bench-api-token")
    settings = from_env(
        {
            "PF_DATABASE_URL": url,
            "PF_BROKER_URL": "memory://",
            "PF_VAR_DIR": str(workdir / "var"),
            "PF_API_TOKEN_FILE": str(token_file),
        }
    )
    client = create_app(settings).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer bench-api-token"
    timings: dict[str, list[float]] = {}
    for name, query in [
        ("first page", "/api/v1/alerts?limit=50"),
        ("status=received", "/api/v1/alerts?limit=50&status=received"),
        ("source=bench", "/api/v1/alerts?limit=50&source=bench"),
        ("fingerprint", "/api/v1/alerts?fingerprint=00000000000003e8"),
    ]:
        samples = []
        for _ in range(args.probes // 10 or 1):
            t0 = time.perf_counter()
            response = client.get(query)
            samples.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.data
        timings[name] = samples
    cursor = client.get("/api/v1/alerts?limit=50").json["next"]
    deep = []
    for _ in range(args.probes // 10 or 1):
        t0 = time.perf_counter()
        body = client.get(f"/api/v1/alerts?limit=50&cursor={cursor}").json
        deep.append((time.perf_counter() - t0) * 1000)
        cursor = body["next"]
    timings["next page (cursor)"] = deep
    _ = sa
    return {
        "alerts": args.million,
        "fill_seconds": round(fill_seconds, 1),
        "dedup_lookup_ms": {
            "p50": round(statistics.median(lookups), 3),
            "p99": round(sorted(lookups)[int(0.99 * len(lookups))], 3),
        },
        "list_api_ms": {
            name: {
                "p50": round(statistics.median(samples), 2),
                "p99": round(sorted(samples)[int(0.99 * (len(samples) - 1))], 2),
            }
            for name, samples in timings.items()
        },
        "plans": {"dedup": dedup_plan, "list": list_plan, "list by status": status_plan},
    }


def _fill_alerts(path: str, count: int) -> None:
    """Insert ``count`` alerts straight through sqlite3 (the fill is not what is measured)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    statuses = ("received", "triaging", "resolved", "escalated")
    batch = []
    for n in range(count):
        stamp = f"2026-11-{1 + n * 25 // count:02d} {n % 24:02d}:{n % 60:02d}:{n % 60:02d}.{n % 1000000:06d}"
        batch.append(
            (
                uuid.UUID(int=n + 1).hex,
                f"{n:016x}",
                "2026-11-26 04:02:39.580783",
                None,
                statuses[n % 4],
                "critical",
                "KubePodCrashLooping",
                "s",
                "d",
                json.dumps({"alertname": "KubePodCrashLooping", "pod": f"p{n}"}),
                "{}",
                None,
                "bench",
                None,
                None,
                None,
                0,
                stamp,
                stamp,
                1,
                None,
                None,
                None,
                stamp,
                stamp,
            )
        )
        if len(batch) == 50_000:
            _flush(conn, batch)
    _flush(conn, batch)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def _flush(conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO alerts (id, fingerprint, starts_at, ends_at, status, severity, alert_name,"
        " summary, description, labels, annotations, generator_url, source_name, workflow_name,"
        " ai_analysis, ai_confidence, auto_resolved, received_at, last_seen_at, times_seen,"
        " triage_started_at, triage_completed_at, resolved_at, created_at, updated_at)"
        " VALUES (" + ",".join("?" * 25) + ")",
        batch,
    )
    conn.commit()
    batch.clear()


def table(rows: list[dict[str, Any]], bare: dict[int, float]) -> str:
    lines = [
        "| scenario | req/s | alerts/s | p50 ms | p99 ms | vs bare req/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        size = 50 if "50-alert" in r["scenario"] else 3
        ratio = (
            f"{r['req_per_s'] / bare[size]:.0%}"
            if "full" in r["scenario"] and bare.get(size)
            else ""
        )
        non_2xx = sum(v for k, v in r["statuses"].items() if not 200 <= int(k) < 300)
        lines.append(
            f"| {r['scenario']} | {r['req_per_s']:,.0f} | {r['alerts_per_s']:,.0f} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {ratio} | {r['errors'] + non_2xx} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each load run")
    parser.add_argument("--connections", type=int, default=8, help="closed-loop concurrency")
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop webhooks per second")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument(
        "--million", type=int, default=1_000_000, help="alerts for the size test (0 skips)"
    )
    parser.add_argument("--probes", type=int, default=2000, help="lookups in the size test")
    parser.add_argument("--only-million", action="store_true", help="run the size test alone")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pf-bench-"))
    results: dict[str, Any] = {"args": vars(args)}
    if not args.only_million:
        rows = bench_bare(args, workdir)
        bare = {3: rows[0]["req_per_s"], 50: rows[1]["req_per_s"]}
        for backend in args.backends.split(","):
            rows += bench_ingest(backend, args, workdir)
        print(table(rows, bare))
        results["rows"] = rows
    if args.million:
        million = bench_million(args, workdir)
        results["million"] = million
        print()
        print(f"SQLite with {million['alerts']:,} alerts (filled in {million['fill_seconds']} s):")
        print(
            f"- dedup lookup: p50 {million['dedup_lookup_ms']['p50']} ms, p99 {million['dedup_lookup_ms']['p99']} ms"
        )
        for name, figures in million["list_api_ms"].items():
            print(f"- list API {name}: p50 {figures['p50']} ms, p99 {figures['p99']} ms")
        for name, plan in million["plans"].items():
            print(f"- plan ({name}): {'; '.join(plan)}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
