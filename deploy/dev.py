"""``make dev``: the compose topology as local processes, for machines without Docker.

Starts, each in its own session with a pid file and logs under a run directory:
the Slack and LLM stand-ins, Flower, the controller (folder mode on a copy of
``examples/`` whose Workflow also reports to the Slack stand-in), ingest under
gunicorn, the engine, the notifier and the scheduler. Redis and PostgreSQL are the
machine's: ``PF_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``) and
``PF_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/punchingfist_dev``,
created when missing and migrated). ``make dev-stop`` stops what the pid files name.

    python deploy/dev.py start | stop | status

Ports and places come from the environment (or make variables of the same name):
DEV_DIR (var/dev), DEV_INGEST_PORT (8080), DEV_SLACK_PORT (8090), DEV_LLM_PORT
(8091), DEV_FLOWER_PORT (5555), and the /metrics ports of the engine, notifier,
controller and scheduler: DEV_ENGINE_METRICS_PORT (9101), DEV_NOTIFIER_METRICS_PORT
(9102), DEV_CONTROLLER_METRICS_PORT (9103), DEV_SCHEDULER_METRICS_PORT (9104); ingest
serves its own on the ingest port. Logs are JSON lines (``PF_LOG_FORMAT`` overrides),
one ``<name>.log`` per process, so that ``grep <alert id> var/dev/*.log`` follows an
alert; what a process prints (the stdout Sink's reports, Celery's banner) goes to
``<name>.out``.

What this must not do: stop a process it did not start. A pid file holds the pid
and the process's start time; a pid reused by another process is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import redis
import sqlalchemy as sa
import yaml

from shared.db.engines import make_engine
from shared.settings import DatabaseSettings

# Every listener of the dev stack: this machine only.
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PUNCHINGFIST = (sys.executable, "-m", "services.cli")
# The Workflow of examples/ that reports to Slack too, and the Sink it gains.
WORKFLOW = "triage-basic"
SLACK_SINK = "slack"
SLACK_TOKEN = "xoxb-test-token"  # the stand-in's default: a development value  # noqa: S105
# Flower's task list with the args column (its default leaves it out): the args
# carry the run id of every task that belongs to a run.
FLOWER_TASK_COLUMNS = "name,uuid,state,args,received,started,runtime,worker"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
# Each deployable that serves /metrics on a port of its own, and that port's default.
METRICS_PORTS = {"engine": 9101, "notifier": 9102, "controller": 9103, "scheduler": 9104}


class Stack:
    """Where everything goes and how it is reached, from the environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = Path(env.get("DEV_DIR") or REPO / "var" / "dev").resolve()
        self.ingest_port = int(env.get("DEV_INGEST_PORT") or 8080)
        self.slack_port = int(env.get("DEV_SLACK_PORT") or 8090)
        self.llm_port = int(env.get("DEV_LLM_PORT") or 8091)
        self.flower_port = int(env.get("DEV_FLOWER_PORT") or 5555)
        self.metrics_ports = {
            name: int(env.get(f"DEV_{name.upper()}_METRICS_PORT") or default)
            for name, default in METRICS_PORTS.items()
        }
        self.broker_url = env.get("PF_BROKER_URL") or "redis://127.0.0.1:6379/0"
        self.database_url = (
            env.get("PF_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/punchingfist_dev"
        )
        self.env = {
            **env,
            "PF_BROKER_URL": self.broker_url,
            "PF_DATABASE_URL": self.database_url,
            "PF_INGEST_BIND": f"127.0.0.1:{self.ingest_port}",
            "PF_CONFIG_DIR": str(self.config_dir),
            "PF_SECRETS_DIR": str(self.secrets_dir),
            "PF_VAR_DIR": str(self.dir / "var"),
            "PF_API_TOKEN_FILE": env.get("PF_API_TOKEN_FILE")
            or str(EXAMPLES / "secrets" / "punchingfist-api" / "token"),
            "PF_LOG_FORMAT": env.get("PF_LOG_FORMAT") or "json",
            **{
                f"PF_{name.upper()}_METRICS_BIND": f"{HOST}:{port}"
                for name, port in self.metrics_ports.items()
            },
            "PYTHONUNBUFFERED": "1",
            # Flower listens on 127.0.0.1 only: its API (/api/tasks) answers without
            # credentials, as the dashboard does.
            "FLOWER_UNAUTHENTICATED_API": "true",
        }

    @property
    def config_dir(self) -> Path:
        return self.dir / "config"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    def pid_file(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def processes(self) -> list[tuple[str, list[str]]]:
        """(name, argv) in start order; ``stop`` goes the other way."""
        python = sys.executable
        return [
            (
                "slack",
                [python, "-m", "services.standins.slack", "--bind", f"{HOST}:{self.slack_port}"],
            ),
            ("llm", [python, "-m", "services.standins.llm", "--bind", f"{HOST}:{self.llm_port}"]),
            # Before the workers: Flower lists only the tasks whose events it saw.
            (
                "flower",
                [
                    str(Path(sys.executable).with_name("celery")),
                    f"--broker={self.broker_url}",
                    "flower",
                    "--address=127.0.0.1",
                    f"--port={self.flower_port}",
                    f"--tasks_columns={FLOWER_TASK_COLUMNS}",
                ],
            ),
            (
                "controller",
                [
                    *PUNCHINGFIST,
                    "controller",
                    "--config-dir",
                    str(self.config_dir),
                    "--ready-file",
                    str(self.dir / "controller.ready"),
                ],
            ),
            ("ingest", [*PUNCHINGFIST, "ingest"]),
            ("engine", [*PUNCHINGFIST, "engine"]),
            ("notifier", [*PUNCHINGFIST, "notifier"]),
            ("scheduler", [*PUNCHINGFIST, "scheduler"]),
        ]


# -- pid files ---------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22);
    None when there is no such process or it has exited (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in {"Z", "X"} else fields[19]


def _read_pid(path: Path) -> int | None:
    """The pid a pid file names, if that process is still the one we started."""
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def _running(stack: Stack) -> dict[str, int]:
    found = {}
    for name, _ in stack.processes():
        pid = _read_pid(stack.pid_file(name))
        if pid is not None:
            found[name] = pid
    return found


# -- start ---------------------------------------------------------------------------


def _ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` when it does not exist yet."""
    where = sa.make_url(url)
    if where.get_backend_name() != "postgresql" or not where.database:
        return
    server = where.set(database="postgres").render_as_string(hide_password=False)
    admin = make_engine(DatabaseSettings(url=server)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": where.database},
            ).first()
            if exists is None:
                quoted = connection.dialect.identifier_preparer.quote(where.database)
                connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
                print(f"created database {where.database}")
    finally:
        admin.dispose()


def _broker_unreachable(url: str) -> str | None:
    """Why the Redis broker cannot be used, or None (else every worker waits for it)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"the broker {url} is not reachable: {exc}"
    finally:
        client.close()
    return None


def _write_config(stack: Stack) -> None:
    """examples/*.yaml, with a Slack Sink on the stand-in added to the Workflow's Sinks.

    A copy, rewritten at each start: the Sink's URL carries the stand-in's port.
    """
    shutil.rmtree(stack.config_dir, ignore_errors=True)
    stack.config_dir.mkdir(parents=True)
    for source in sorted(EXAMPLES.glob("*.yaml")):
        documents = [doc for doc in yaml.safe_load_all(source.read_text()) if doc]
        for doc in documents:
            if doc.get("kind") == "Workflow" and doc["metadata"]["name"] == WORKFLOW:
                doc["spec"]["sinks"] = [*doc["spec"].get("sinks", []), SLACK_SINK]
        (stack.config_dir / source.name).write_text(
            f"# Written by `make dev` from examples/{source.name}; edit that one.\n"
            + yaml.safe_dump_all(documents, sort_keys=False)
        )
    sink = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Sink",
        "metadata": {"name": SLACK_SINK},
        "spec": {
            "type": "slack",
            "config": {
                "channel": "#incidents",
                "apiUrl": f"http://127.0.0.1:{stack.slack_port}/api/",
                "tokenSecretRef": {"name": "slack-bot", "key": "token"},
                "threadUpdates": True,
            },
        },
    }
    (stack.config_dir / "slack-sink.yaml").write_text(
        "# Written by `make dev`: the Slack stand-in of this stack.\n"
        + yaml.safe_dump(sink, sort_keys=False)
    )
    shutil.rmtree(stack.secrets_dir, ignore_errors=True)
    shutil.copytree(EXAMPLES / "secrets", stack.secrets_dir)
    (stack.secrets_dir / "slack-bot").mkdir()
    (stack.secrets_dir / "slack-bot" / "token").write_text(SLACK_TOKEN)


def _spawn(stack: Stack, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    with (
        (stack.dir / f"{name}.out").open("ab") as out,
        (stack.dir / f"{name}.log").open("ab") as err,
    ):
        child = subprocess.Popen(
            argv,
            cwd=REPO,
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            # Its own session: `make` returning or a Ctrl-C in the terminal does not
            # reach it, and stop signals its whole process group.
            start_new_session=True,
        )
    started = _start_time(child.pid)
    stack.pid_file(name).write_text(f"{child.pid} {started}\n")
    return child


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local http)
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _ready_checks(stack: Stack) -> dict[str, Callable[[], bool]]:
    def worker(name: str) -> Callable[[], bool]:
        def alive() -> bool:
            check = subprocess.run(
                [*PUNCHINGFIST, "healthcheck", name, "--timeout", "2"],
                cwd=REPO,
                env=stack.env,
                capture_output=True,
                check=False,
            )
            return check.returncode == 0

        return alive

    return {
        "slack": lambda: _answers(f"http://127.0.0.1:{stack.slack_port}/_test/messages"),
        "flower": lambda: _answers(f"http://127.0.0.1:{stack.flower_port}/healthcheck"),
        "controller": (stack.dir / "controller.ready").exists,
        "ingest": lambda: _answers(f"http://127.0.0.1:{stack.ingest_port}/readyz"),
        "engine": worker("engine"),
        "notifier": worker("notifier"),
    }


def _wait_ready(stack: Stack, name: str, child: subprocess.Popen[bytes]) -> None:
    check = _ready_checks(stack).get(name)
    if check is None:
        return
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if child.poll() is not None:
            raise StartError(f"{name} exited with {child.returncode}")
        if time.monotonic() > deadline:
            raise StartError(f"{name} was not ready after {START_TIMEOUT:.0f}s")
        time.sleep(0.2)


class StartError(Exception):
    pass


def start(stack: Stack) -> int:
    running = _running(stack)
    if running:
        names = ", ".join(f"{name} ({pid})" for name, pid in running.items())
        print(f"make dev: already running: {names}; `make dev-stop` first", file=sys.stderr)
        return 1
    stack.dir.mkdir(parents=True, exist_ok=True)
    for stale in [*stack.dir.glob("*.pid"), *stack.dir.glob("*.log"), *stack.dir.glob("*.out")]:
        stale.unlink()
    (stack.dir / "controller.ready").unlink(missing_ok=True)
    _write_config(stack)
    unreachable = _broker_unreachable(stack.broker_url)
    if unreachable:
        print(f"make dev: {unreachable}", file=sys.stderr)
        return 1
    try:
        _ensure_database(stack.database_url)
    except sa.exc.OperationalError as exc:
        print(f"make dev: cannot create the database: {exc.orig}", file=sys.stderr)
        return 1
    migrate = subprocess.run([*PUNCHINGFIST, "migrate"], cwd=REPO, env=stack.env, check=False)
    if migrate.returncode != 0:
        return migrate.returncode
    for name, argv in stack.processes():
        child = _spawn(stack, name, argv)
        print(f"  {name:<11} pid {child.pid:<8} log {stack.dir / name}.log", flush=True)
        try:
            _wait_ready(stack, name, child)
        except StartError as exc:
            print(f"make dev: {exc}; its log ends:", file=sys.stderr)
            for line in (stack.dir / f"{name}.log").read_text(errors="replace").splitlines()[-15:]:
                print(f"    {line}", file=sys.stderr)
            stop(stack)
            return 1
    print(
        f"""
Punching Fist is running as local processes (stop: make dev-stop)
  ingest     http://127.0.0.1:{stack.ingest_port}   (/webhook/alertmanager, /api/v1/alerts)
  flower     http://127.0.0.1:{stack.flower_port}
  slack      http://127.0.0.1:{stack.slack_port}/_test/messages   (what the Slack stand-in was sent)
  llm        http://127.0.0.1:{stack.llm_port}/v1   (OpenAI-compatible stand-in)
  database   {sa.make_url(stack.database_url).render_as_string(hide_password=True)}
  broker     {stack.broker_url}
  logs, pids {stack.dir}   (JSON lines: grep <alert id> {stack.dir}/*.log)
Send an alert:
  curl -H "Authorization: Bearer $(cat examples/secrets/alertmanager-webhook/token)" \\
    -H 'Content-Type: application/json' -d @tests/fixtures/alertmanager/01-firing-single.json \\
    http://127.0.0.1:{stack.ingest_port}/webhook/alertmanager"""
    )
    return 0


# -- stop ----------------------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    """Whether a live process (not a zombie waiting for its reaper) is in group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # exited while we looked
            continue
        # fields: state, ppid, pgrp, ...
        if fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
            return True
    return False


def _wait_gone(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _alive(pid: int, started: str | None) -> bool:
    return started is not None and _start_time(pid) == started


def _stop_one(pid: int) -> str:
    """SIGTERM the session leader ``pid``; SIGKILL its group if it outlives STOP_TIMEOUT
    or leaves processes behind. Says which it took."""
    started = _start_time(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    clean = _wait_gone(functools.partial(_alive, pid, started), STOP_TIMEOUT)
    # Anything left in the leader's group was started by it (a pool process).
    leftovers = _group_alive(pid)
    if leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_gone(functools.partial(_group_alive, pid), 5)
    if not clean:
        return f"killed (still running after {STOP_TIMEOUT:.0f}s)"
    if leftovers:
        return "stopped; killed what it left in its process group"
    return "stopped"


def stop(stack: Stack) -> int:
    """SIGTERM each process we started (newest first); what outlives STOP_TIMEOUT, or
    stays behind in its group (a pool process), gets SIGKILL."""
    stopped = 0
    for name, _ in reversed(stack.processes()):
        path = stack.pid_file(name)
        pid = _read_pid(path)
        if pid is None:
            path.unlink(missing_ok=True)
            continue
        how = _stop_one(pid)
        print(f"  {name:<11} pid {pid:<8} {how}")
        path.unlink(missing_ok=True)
        stopped += 1
    (stack.dir / "controller.ready").unlink(missing_ok=True)
    if not stopped:
        print("make dev: nothing was running")
    return 0


def status(stack: Stack) -> int:
    running = _running(stack)
    for name, _ in stack.processes():
        pid = running.get(name)
        print(f"  {name:<11} {'pid ' + str(pid) if pid else 'not running'}")
    return 0 if len(running) == len(stack.processes()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy/dev.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    stack = Stack(dict(os.environ))
    actions: dict[str, Callable[[Stack], int]] = {"start": start, "stop": stop, "status": status}
    return actions[args.action](stack)


if __name__ == "__main__":
    sys.exit(main())
