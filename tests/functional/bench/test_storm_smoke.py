"""`make bench-storm` at a tiny size, so that its code path keeps working in CI.

The real command (bench/storm.py) against the real processes it starts: gunicorn
ingest and an engine worker on SQLite (and PostgreSQL), the suite's Redis database.
200 AlertManager-shaped notifications over 5 fingerprints, each sent by two replicas
at once, must leave exactly 5 alerts and 5 finished runs; its figures are not
checked (they are reported, never asserted), only that they are there and that the
table writer reads them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report, storm
from tests.conftest import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_tiny_storm_makes_one_run_per_fingerprint(
    backend: str, redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "results" / "storm.json"
    env = {
        **os.environ,
        "PF_BENCH_POSTGRES_URL": POSTGRES_ADMIN_URL,
        "PF_BENCH_DATABASE_PREFIX": "pf_test_storm_",
    }
    argv = [sys.executable, "bench/storm.py", "--notifications", "200", "--fingerprints", "5"]
    argv += ["--connections", "8", "--backends", backend, "--redis-url", redis_url]
    argv += ["--timeout", "120", "--out", str(out)]
    finished = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=220, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr

    (result,) = json.loads(out.read_text())["results"]
    assert result["notifications"] == 200
    assert result["statuses"] == {"200": 200}
    assert result["phases"] == {"Succeeded": 5}
    assert {c["check"]: (c["expected"], c["actual"]) for c in result["checks"]} == {
        "runs created": (5, 5),
        "alerts recorded": (5, 5),
        "fingerprints with a run": (5, 5),
        "runs Succeeded": (5, 5),
        "notifications answered 2xx": (200, 200),
        # 40 groups' worth of notifications, 2 replicas each: 1+2+3+4+5 then 5s.
        "alerts seen (sum of times_seen)": (980, 980),
    }
    assert result["ingest_p99_ms"] >= result["ingest_p50_ms"] > 0
    assert result["all_runs_finished_s"] > 0

    rows = report.storm_rows(json.loads(out.read_text()))
    assert [(r.figure.split(":")[1].strip()[:12], r.verdict) for r in rows[:2]] == [
        ("runs created", "met"),
        ("no loss, no ", "met"),
    ]


def test_notifications_are_shaped_as_alertmanager_sends_them() -> None:
    start = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)
    bodies = storm.notifications(200, 5, 5, 2, start)
    assert len(bodies) == 200
    # One group: it grows as its alerts start firing, then repeats whole; each
    # notification is sent twice in a row (an HA pair of AlertManagers).
    assert [len(b["alerts"]) for b in bodies[:12]] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]
    assert all(bodies[i] == bodies[i + 1] for i in range(0, 200, 2))
    fingerprints = {a["fingerprint"] for b in bodies for a in b["alerts"]}
    assert len(fingerprints) == 5
    whole = bodies[-1]
    assert set(whole) >= {
        "receiver",
        "status",
        "alerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "version",
        "groupKey",
        "truncatedAlerts",
    }
    assert whole["groupKey"] == '{}:{alertname="KubePodCrashLooping", namespace="team-0"}'
    assert whole["commonLabels"] == {
        "alertname": "KubePodCrashLooping",
        "namespace": "team-0",
        "job": "kube-state-metrics",
    }
    assert bodies[0]["commonLabels"] == bodies[0]["alerts"][0]["labels"]
    assert {a["status"] for a in whole["alerts"]} == {"firing"}
    assert {a["startsAt"] for a in whole["alerts"]} == {f"2026-11-29T08:00:0{i}Z" for i in range(5)}


def test_a_hundred_fingerprints_fall_into_twenty_groups() -> None:
    start = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)
    bodies = storm.notifications(10_000, 100, 5, 2, start)
    assert len({b["groupKey"] for b in bodies}) == 20
    assert len({a["fingerprint"] for b in bodies for a in b["alerts"]}) == 100
