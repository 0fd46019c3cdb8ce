"""``make dev`` and ``make dev-stop``: the whole topology as local processes, and back.

``make dev`` runs on free ports, this test's Redis database and a PostgreSQL
database it creates itself. One alert posted to ingest must reach the Slack
stand-in as a thread's parent, Flower's API must list the engine's tasks with the
run id in their args, and ``grep <alert id>`` over the JSON logs must follow it
through ingest, the engine and the notifier. ``make dev-stop`` must then leave no
process behind, pool processes and gunicorn workers included.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.conftest import POSTGRES_ADMIN_URL, REDIS_URL
from tests.support.ports import free_port
from tests.support.scrape import scrape
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[3]
ALERT = REPO / "tests/fixtures/alertmanager/01-firing-single.json"
TOKEN = (REPO / "examples/secrets/alertmanager-webhook/token").read_text().strip()
STEPS = ["record", "investigate", "is-critical", "escalate"]

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(400)]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


METRICS = ("engine", "notifier", "controller", "scheduler")


class Stack:
    def __init__(self, run_dir: Path, database: str) -> None:
        self.dir = run_dir
        self.database = database
        self.ports = {
            name: free_port() for name in ("DEV_INGEST_PORT", "DEV_SLACK_PORT", "DEV_FLOWER_PORT")
        }
        self.ports["DEV_LLM_PORT"] = free_port()
        for name in METRICS:
            self.ports[f"DEV_{name.upper()}_METRICS_PORT"] = free_port()
        self.database_url = (
            sa.make_url(POSTGRES_ADMIN_URL)
            .set(database=database)
            .render_as_string(hide_password=False)
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("PF_")}
        self.env = {
            **env,
            **{name: str(port) for name, port in self.ports.items()},
            "DEV_DIR": str(run_dir),
            "PF_BROKER_URL": REDIS_URL,
            "PF_DATABASE_URL": self.database_url,
            # Two cores are shared: one process per pool is enough for one alert.
            "PF_ENGINE_CONCURRENCY": "1",
            "PF_NOTIFIER_CONCURRENCY": "1",
            "PF_INGEST_WORKERS": "1",
        }
        self.alert_id = ""
        self.run_id = ""

    def url(self, port: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def pids(self) -> dict[str, int]:
        return {
            path.stem: int(path.read_text().split()[0]) for path in sorted(self.dir.glob("*.pid"))
        }


def _admin() -> sa.Engine:
    return make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL)).execution_options(
        isolation_level="AUTOCOMMIT"
    )


def _database_exists(name: str) -> bool:
    admin = _admin()
    try:
        with admin.connect() as connection:
            found = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            return found is not None
    finally:
        admin.dispose()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    broker = redis.Redis.from_url(REDIS_URL)
    try:
        broker.ping()
    except redis.ConnectionError:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    broker.flushdb()
    try:
        admin = _admin()
        with admin.connect():
            pass
        admin.dispose()
    except sa.exc.OperationalError:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    database = f"pf_test_dev_{uuid.uuid4().hex[:10]}"
    running = Stack(tmp_path_factory.mktemp("dev"), database)
    try:
        started = _make("dev", running.env)
        assert started.returncode == 0, started.stdout + started.stderr
        # make dev created its database (it did not exist before).
        assert _database_exists(database)
        request = urllib.request.Request(
            running.url("DEV_INGEST_PORT", "/webhook/alertmanager"),
            data=ALERT.read_bytes(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        [running.alert_id] = answer["alerts"]
        [running.run_id] = answer["runs"]
        yield running
    finally:
        if any(running.dir.glob("*.pid")):
            _make("dev-stop", running.env)
        admin = _admin()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
        broker.flushdb()
        broker.close()


def test_the_alert_reaches_the_slack_standin_as_a_thread_parent(stack: Stack) -> None:
    def parents() -> list[dict[str, Any]]:
        messages = _get_json(stack.url("DEV_SLACK_PORT", "/_test/messages"))
        return [m for m in messages if not m.get("thread_ts") or m["thread_ts"] == m["ts"]]

    [parent] = wait_for(parents, 120, "no parent message on the Slack stand-in")
    assert parent["channel"] == "C0INCIDENTS"
    assert "KubePodCrashLooping" in parent["text"]


def test_flower_lists_the_engine_tasks_with_the_run_id(stack: Stack) -> None:
    def engine_steps() -> list[dict[str, Any]]:
        tasks = _get_json(stack.url("DEV_FLOWER_PORT", "/api/tasks"))
        steps = [
            task
            for task in tasks.values()
            if task["name"] == "engine.run_step" and stack.run_id in (task["args"] or "")
        ]
        succeeded = [task for task in steps if task["state"] == "SUCCESS"]
        return succeeded if len(succeeded) == len(STEPS) else []

    steps = wait_for(engine_steps, 120, "Flower did not list the run's four steps as done")
    assert {task["worker"] for task in steps} == {f"engine@{socket.gethostname()}"}
    tasks = _get_json(stack.url("DEV_FLOWER_PORT", "/api/tasks"))
    names = {task["name"] for task in tasks.values() if stack.run_id in (task["args"] or "")}
    # The start ingest sent, and the deliveries to the console and Slack Sinks.
    assert {"engine.start_workflows", "engine.run_step", "notifier.deliver"} <= names


def test_every_deployable_serves_metrics_that_count_the_alert(stack: Stack) -> None:
    wait_for(
        lambda: (
            scrape(stack.url("DEV_ENGINE_METRICS_PORT", "/metrics")).value(
                "punchingfist_runs_finished_total", phase="Succeeded"
            )
            == 1
        ),
        120,
        "the engine's /metrics to count the run",
        ignoring=(OSError,),
    )
    engine = scrape(stack.url("DEV_ENGINE_METRICS_PORT", "/metrics"))
    assert engine.value(
        "punchingfist_tasks_total", task="engine.run_step", outcome="succeeded"
    ) == len(STEPS)
    notifier = wait_for(
        lambda: (
            (found := scrape(stack.url("DEV_NOTIFIER_METRICS_PORT", "/metrics"))).total(
                "punchingfist_deliveries_total", outcome="delivered"
            )
            >= 1
            and found
        ),
        60,
        "the notifier's /metrics to count a delivery",
        ignoring=(OSError,),
    )
    assert (
        notifier.value("punchingfist_deliveries_total", sink_type="slack", outcome="delivered") >= 1
    )
    # make dev does not wait for the scheduler (it has no readiness to wait on): its
    # endpoint may come up a moment after the others.
    controller = wait_for(
        lambda: scrape(stack.url("DEV_CONTROLLER_METRICS_PORT", "/metrics")),
        30,
        "controller",
        ignoring=(OSError,),
    )
    assert controller.total("punchingfist_controller_reconciles_total", kind="Source") >= 1
    scheduler = wait_for(
        lambda: scrape(stack.url("DEV_SCHEDULER_METRICS_PORT", "/metrics")),
        30,
        "scheduler",
        ignoring=(OSError,),
    )
    assert scheduler.has("punchingfist_scheduler_last_success_timestamp_seconds")
    ingest = scrape(stack.url("DEV_INGEST_PORT", "/metrics"))
    assert ingest.total("flask_http_request_duration_seconds_count") >= 1


def _grep(stack: Stack, needle: str) -> list[tuple[str, dict[str, Any]]]:
    found = subprocess.run(
        ["grep", "-H", "--", needle, *sorted(str(p) for p in stack.dir.glob("*.log"))],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = []
    for line in found.stdout.splitlines():
        path, _, text = line.partition(":")
        # Every line that names the alert is one JSON object.
        lines.append((Path(path).stem, json.loads(text)))
    return lines


def test_grep_for_the_alert_id_follows_it_through_the_json_logs(stack: Stack) -> None:
    def complete() -> list[tuple[str, dict[str, Any]]]:
        lines = _grep(stack, stack.alert_id)
        delivered = [
            entry
            for name, entry in lines
            if name == "notifier" and entry["msg"] == "delivery attempt finished"
        ]
        return lines if len(delivered) == 2 else []

    lines = wait_for(complete, 120, "the notifier's lines about the alert never came")
    by_process: dict[str, list[dict[str, Any]]] = {}
    for name, entry in lines:
        by_process.setdefault(name, []).append(entry)
    assert {"ingest", "engine", "notifier"} <= set(by_process)

    [recorded] = [e for e in by_process["ingest"] if e["msg"] == "webhook recorded"]
    assert recorded["runs"] == {stack.alert_id: stack.run_id}

    for entry in by_process["engine"]:
        assert entry["alert_id"] == stack.alert_id, entry
        assert entry["run_id"] == stack.run_id, entry
        assert entry["task_id"], entry
    steps = {e["step"] for e in by_process["engine"] if e["msg"] == "step attempt finished"}
    assert steps == set(STEPS)

    for entry in by_process["notifier"]:
        assert entry["alert_id"] == stack.alert_id, entry
        assert entry["run_id"] == stack.run_id, entry
        assert entry["task_id"], entry
    sinks = {e["sink"] for e in by_process["notifier"] if e["msg"] == "delivery attempt finished"}
    assert sinks == {"console", "slack"}


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
            members.append(int(stat.parent.name))
    return members


def test_make_dev_stop_stops_every_process(stack: Stack) -> None:
    pids = stack.pids()
    assert set(pids) == {
        "slack", "llm", "flower", "controller", "ingest", "engine", "notifier", "scheduler",
    }  # fmt: skip
    # Each was started in its own session: its group holds its children too
    # (gunicorn's worker, Celery's pool process).
    assert len(_group_members(pids["engine"])) >= 2
    assert len(_group_members(pids["ingest"])) >= 2

    stopped = _make("dev-stop", stack.env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for name, pid in pids.items():
        assert _group_members(pid) == [], f"{name} (pid {pid}) left processes behind"
    assert not list(stack.dir.glob("*.pid"))
    # Every one stopped on SIGTERM, none had to be killed.
    assert "killed" not in stopped.stdout, stopped.stdout
    # A second stop finds nothing to do.
    again = _make("dev-stop", stack.env)
    assert again.returncode == 0
    assert "nothing was running" in again.stdout
