"""The whole system on loopback, each deployable its own process, for the end-to-end tests.

``Pipeline`` starts, on free ports: a fresh PostgreSQL database (``e2e_<hex>`` on the
machine's server, migrated to head), a private ``redis-server`` (appendonly, its own
folder), a real AlertManager routing to the ingest webhook with a bearer token,
``punchingfist ingest`` (gunicorn), ``punchingfist engine``, ``punchingfist notifier``
and ``punchingfist controller`` (folder mode on the scenario's resources, or watching
the Kubernetes API double). In this process it serves the Slack stand-in, a scripted
OpenAI-compatible model, a recorded Prometheus and the Kubernetes API double with the
scenario's cluster state.

A scenario is a folder ``scenarios/<name>/``: resource YAML files (Source, Workflow,
Sinks) whose ``${NAME}`` placeholders are the harness's URLs (``SLACK_API_URL``,
``LLM_URL``, ``PROMETHEUS_URL``, ``ALERTMANAGER_URL``, ``KUBERNETES_API_URL``), and
optionally ``cluster.yaml`` (``cluster`` objects, logs and metrics for the API double,
``prometheus`` recordings), in the eval scenarios' format.

Alerts go in through AlertManager's API v2 only (``fire``, ``resolve``). Every process
is stopped by its pid in ``close`` (also after a failure); the fault tests reach each
one through ``processes`` or the ``kill_*``/``restart_*`` shorthands.

A fault test, for example::

    def test_engine_killed_mid_step(pipeline_for):
        pipeline = pipeline_for("duplicates-and-groups", postgres="private")
        pipeline.fire({"labels": {"alertname": "X", "severity": "critical"}})
        pipeline.wait(lambda: pipeline.count("workflow_runs") == 1, "a run")
        pipeline.kill_engine()            # SIGKILL of the worker and its pool
        pipeline.start_again("engine")    # waits until it answers a ping
        pipeline.restart_redis()          # same port and folder: the AOF is reloaded
        pipeline.restart_postgres()       # private server only
        pipeline.slack.fail_next("chat.postMessage", status=429, retry_after=1)

``processes[name]`` (redis, postgres, alertmanager, controller, ingest, engine,
notifier) is a ``processes.Process`` with ``kill``, ``stop``, ``start``, ``pid`` and
``log()``; ``env={...}`` overrides PF_ settings, ``route={...}`` AlertManager's timings.

What this module must not do: post to ingest's webhook itself, or decide what a test
asserts. It starts, stops and reads.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import pwd
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

from services.standins.slack import SlackAPI
from shared.db import migrate
from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.e2e.processes import Process
from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.openai_double import ScriptedModel
from tests.support.ports import free_port
from tests.support.promrecord import RecordedPrometheus
from tests.support.waiting import wait_for

REPO = Path(__file__).parents[2]
SCENARIOS = Path(__file__).parent / "scenarios"
PUNCHINGFIST = [sys.executable, "-m", "services.cli"]
POSTGRES_ADMIN_URL = os.environ.get(
    "PF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
REDIS_SERVER = shutil.which("redis-server")

WEBHOOK_TOKEN = "e2e-webhook-token"
API_TOKEN = "e2e-api-token"
SLACK_TOKEN = "xoxb-e2e-token"
SLACK_SIGNING_SECRET = "e2e-slack-signing-secret"
FINISHED = ("Succeeded", "Failed", "Skipped")
# (Secret, key, value) the scenarios' resources refer to.
SECRETS = (
    ("alertmanager-webhook", "token", WEBHOOK_TOKEN),
    ("slack-bot", "token", SLACK_TOKEN),
)


def missing_binaries() -> list[str]:
    """What the machine lacks for the harness (``.ci/run`` installs all of it)."""
    return [
        name
        for name, path in (
            ("prometheus-alertmanager", ALERTMANAGER),
            ("redis-server", REDIS_SERVER),
        )
        if path is None
    ]


def _answers(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


def _alertmanager_config(webhook_url: str, route: Mapping[str, Any]) -> str:
    config = {
        "route": {"receiver": "punchingfist", **route},
        "receivers": [
            {
                "name": "punchingfist",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials": WEBHOOK_TOKEN}
                        },
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


# AlertManager's timings, short so a test sees its notifications within seconds:
# the first webhook a second after an alert arrives, and the firing alert repeated
# every two seconds for as long as it fires (every test exercises deduplication).
DEFAULT_ROUTE: Mapping[str, Any] = {
    "group_by": ["alertname", "namespace"],
    "group_wait": "1s",
    "group_interval": "1s",
    "repeat_interval": "2s",
}


class Pipeline:
    """Every deployable of one scenario; ``start`` it, use it, ``close`` it."""

    def __init__(
        self,
        scenario: str,
        workdir: Path,
        *,
        controller: str = "folder",
        postgres: str = "shared",
        route: Mapping[str, Any] = DEFAULT_ROUTE,
        env: Mapping[str, str] | None = None,
        postgres_admin_url: str = POSTGRES_ADMIN_URL,
        database_prefix: str = "e2e_",
    ) -> None:
        assert controller in ("folder", "kubernetes"), controller
        assert postgres in ("shared", "private"), postgres
        self.scenario = scenario
        self.scenario_dir = SCENARIOS / scenario
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.controller_mode = controller
        self.route = dict(route)
        self.extra_env = dict(env or {})
        self.processes: dict[str, Process] = {}
        self._stack = contextlib.ExitStack()
        self._database_name = f"{database_prefix}{uuid.uuid4().hex[:12]}"
        # "shared": a database on a running server (the machine's, or the one a test
        # brings: postgres_admin_url); "private": a server of our own (initdb in a
        # temporary folder), which the fault tests may stop and restart.
        self.postgres_mode = postgres
        self.postgres_admin_url = postgres_admin_url
        self._postgres_dir: Path | None = None
        self.database_url = ""
        self._db: sa.Engine | None = None
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.ingest_port = free_port()
        self.ingest_url = f"http://127.0.0.1:{self.ingest_port}"
        self.alertmanager_port = free_port()
        self.alertmanager_url = f"http://127.0.0.1:{self.alertmanager_port}"
        cluster_file = self.scenario_dir / "cluster.yaml"
        self.cluster_state: dict[str, Any] = (
            yaml.safe_load(cluster_file.read_text()) if cluster_file.exists() else {}
        )
        self.slack = SlackAPI(token=SLACK_TOKEN)
        self.model = ScriptedModel([])
        self.prometheus = RecordedPrometheus(self.cluster_state.get("prometheus") or [])
        # One Kubernetes API double: the scenario's cluster for the agent's tools, and
        # the custom resources when the controller watches it.
        self.kube = KubeApiDouble()
        self.cluster: Cluster = self.kube.state.load(self.cluster_state.get("cluster") or {})
        self.http = httpx.Client(timeout=30.0)

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> Pipeline:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for double in (self.slack, self.model, self.prometheus, self.kube):
            self._stack.enter_context(double)  # type: ignore[arg-type]
        self._write_secrets()
        if self.postgres_mode == "private":
            self._start_private_postgres()
        self._create_database()
        self._define_processes()
        # Everything at once: ingest reads the Sources from the database as the
        # controller stores them (its /readyz says when), and messages wait in Redis
        # until the workers consume them.
        for process in self.processes.values():
            if not process.running():
                process.start()
        self.wait_redis()
        self.wait_controller_ready()
        self.wait_http(f"{self.ingest_url}/readyz", "ingest")
        self.wait_http(f"{self.alertmanager_url}/-/ready", "alertmanager")
        self.wait_workers()

    def close(self) -> None:
        """Stop every process by its pid (also after a failure), then the doubles."""
        errors: list[str] = []
        # First our own keep-alive connections: gunicorn waits for open ones to close.
        self.http.close()
        # All at once (each takes a second or two to stop cleanly), Redis last so the
        # workers' warm shutdown can still acknowledge what they finished.
        last = ("redis", "postgres")
        services = [p for name, p in self.processes.items() if name not in last]
        stores = [p for name, p in self.processes.items() if name in last]
        if self.postgres_mode == "private":
            # Its database goes with its folder; no DROP needed on a stopped server.
            self.database_url = ""
            if self._db is not None:
                self._db.dispose()
                self._db = None
        for group in (services, stores):
            for process in group:
                try:
                    process.terminate()
                except Exception as exc:  # every process must get its stop
                    errors.append(f"{process.name}: {exc!r}")
            for process in group:
                try:
                    process.wait_stopped()
                except Exception as exc:  # every process must get its stop
                    errors.append(f"{process.name}: {exc!r}")
        self._stack.close()
        self._drop_database()
        if self._postgres_dir is not None:
            shutil.rmtree(self._postgres_dir, ignore_errors=True)
        if errors:
            raise RuntimeError(f"processes that did not stop cleanly: {errors}")

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what runs ---------------------------------------------------------------------------

    def urls(self) -> dict[str, str]:
        """The ``${NAME}`` placeholders of a scenario's resource files."""
        return {
            "SLACK_API_URL": self.slack.url,
            "LLM_URL": self.model.url,
            "PROMETHEUS_URL": self.prometheus.url,
            "ALERTMANAGER_URL": self.alertmanager_url,
            "KUBERNETES_API_URL": self.cluster.url,
        }

    def resources(self) -> list[dict[str, Any]]:
        """The scenario's resources, placeholders filled in."""
        found: list[dict[str, Any]] = []
        for path in sorted(self.scenario_dir.glob("*.yaml")):
            if path.name == "cluster.yaml":
                continue
            text = string.Template(path.read_text()).substitute(self.urls())
            found += [doc for doc in yaml.safe_load_all(text) if doc]
        return found

    def env(self) -> dict[str, str]:
        """The environment every deployable gets (the user's PF_ settings left out)."""
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PF_") and key not in ("CELERY_BROKER_URL", "KUBECONFIG")
        }
        base.update(
            {
                "PYTHONPATH": str(REPO),
                "PF_DATABASE_URL": self.database_url,
                "PF_BROKER_URL": self.redis_url,
                "PF_SECRETS_DIR": str(self.workdir / "secrets"),
                "PF_VAR_DIR": str(self.workdir / "var"),
                "PF_API_TOKEN_FILE": str(self.workdir / "api-token"),
                "PF_SLACK_SIGNING_SECRET_FILE": str(self.workdir / "slack-signing-secret"),
                "PF_LOG_FORMAT": "json",
                "PF_RESOURCE_REFRESH_SECONDS": "1",
                "PF_OUTBOX_RELAY_INTERVAL": "0.5",
                "PF_PUBLIC_URL": self.ingest_url,
                "PF_ENGINE_CONCURRENCY": "2",
                "PF_ENGINE_RETRY_BACKOFF": "0.1",
                "PF_ENGINE_RETRY_BACKOFF_MAX": "0.5",
                "PF_ENGINE_LEASE_SECONDS": "5",
                "PF_ENGINE_RECOVERY_INTERVAL": "0.5",
                "PF_ENGINE_KUBERNETES_API_URL": self.cluster.url,
                "PF_NOTIFIER_CONCURRENCY": "2",
                "PF_NOTIFIER_RETRY_BACKOFF": "0.1",
                "PF_NOTIFIER_RETRY_BACKOFF_MAX": "0.5",
                "PF_NOTIFIER_HTTP_TIMEOUT": "5",
                "PF_NOTIFIER_LEASE_SECONDS": "20",
                "PF_NOTIFIER_RECOVERY_INTERVAL": "0.5",
                "PF_CONTROLLER_POLL_INTERVAL": "0.5",
            }
        )
        base.update(self.extra_env)
        return base

    def _write_secrets(self) -> None:
        secrets = self.workdir / "secrets"
        for name, key, value in SECRETS:
            (secrets / name).mkdir(parents=True, exist_ok=True)
            (secrets / name / key).write_text(value + "\n")
        (self.workdir / "api-token").write_text(API_TOKEN + "\n")
        (self.workdir / "slack-signing-secret").write_text(SLACK_SIGNING_SECRET + "\n")

    def _start_private_postgres(self) -> None:
        """initdb and ``postgres`` in the foreground, as user postgres when we are root
        (the server refuses root). The folder is under /tmp, not the test's 0700 one."""
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        bindir = found[-1].parent if found else Path(shutil.which("postgres") or "postgres").parent
        self._postgres_dir = Path(tempfile.mkdtemp(prefix="pf-e2e-pg-"))
        as_postgres: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self._postgres_dir, account.pw_uid, account.pw_gid)
            as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        data = self._postgres_dir / "data"
        subprocess.run(
            [
                *as_postgres,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        self._add(
            "postgres",
            [
                *as_postgres,
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(self._postgres_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                # A crash of the test machine is not a scenario: the disk need not sync.
                "-c",
                "fsync=off",
            ],
            os.environ,
            stop_signal=signal.SIGINT,
        )
        self.postgres_admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.processes["postgres"].start()
        self.wait_postgres()

    def wait_postgres(self, timeout: float = 30.0) -> None:
        def connects() -> bool:
            self._alive("postgres")
            engine = make_engine(DatabaseSettings(url=self.postgres_admin_url))
            try:
                with engine.connect():
                    return True
            finally:
                engine.dispose()

        wait_for(
            connects,
            timeout,
            "PostgreSQL to accept connections",
            interval=0.1,
            ignoring=(sa.exc.OperationalError,),
        )

    def _create_database(self) -> None:
        admin = make_engine(DatabaseSettings(url=self.postgres_admin_url)).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self._database_name}"')
        admin.dispose()
        self.database_url = (
            sa.make_url(self.postgres_admin_url)
            .set(database=self._database_name)
            .render_as_string(hide_password=False)
        )
        self._db = make_engine(DatabaseSettings(url=self.database_url))
        migrate.upgrade(self._db)

    def _drop_database(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None
        if not self.database_url:
            return
        admin = make_engine(DatabaseSettings(url=self.postgres_admin_url)).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self._database_name}" WITH (FORCE)')
        admin.dispose()
        self.database_url = ""

    def _define_processes(self) -> None:
        env = self.env()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(exist_ok=True)
        assert REDIS_SERVER is not None
        assert ALERTMANAGER is not None
        self._add(
            "redis",
            [
                REDIS_SERVER,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                # Every write on disk before Redis answers: a restart loses nothing.
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            env,
        )
        am_dir = self.workdir / "alertmanager"
        am_dir.mkdir(exist_ok=True)
        config = am_dir / "alertmanager.yml"
        config.write_text(
            _alertmanager_config(f"{self.ingest_url}/webhook/alertmanager", self.route)
        )
        self._add(
            "alertmanager",
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={am_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",
                f"--web.external-url={self.alertmanager_url}",
            ],
            env,
        )
        self._add(
            "ingest",
            [
                *PUNCHINGFIST,
                "ingest",
                "--bind",
                f"127.0.0.1:{self.ingest_port}",
                "--workers",
                "2",
            ],
            env,
        )
        self._add("engine", [*PUNCHINGFIST, "engine"], env)
        self._add("notifier", [*PUNCHINGFIST, "notifier"], env)
        ready = self.workdir / "controller.ready"
        if self.controller_mode == "folder":
            config_dir = self.workdir / "config"
            config_dir.mkdir(exist_ok=True)
            for n, resource in enumerate(self.resources()):
                name = f"{n:02d}-{resource['kind'].lower()}-{resource['metadata']['name']}.yaml"
                (config_dir / name).write_text(yaml.safe_dump(resource, sort_keys=False))
            argv = ["controller", "--config-dir", str(config_dir), "--ready-file", str(ready)]
        else:
            kubeconfig = self.workdir / "kubeconfig"
            kubeconfig.write_text(self.kube.kubeconfig())
            # The same Secrets as the folder (the controller checks secretRefs through
            # the API in a cluster); the services still read them from PF_SECRETS_DIR.
            for name, key, value in SECRETS:
                data = {key: base64.b64encode(value.encode()).decode()}
                self.kube.state.create(
                    "secrets", "default", {"metadata": {"name": name}, "data": data}
                )
            plurals = {"Source": "sources", "Workflow": "workflows", "Sink": "sinks"}
            for resource in self.resources():
                namespace = resource["metadata"].get("namespace", "default")
                self.kube.state.create(plurals[resource["kind"]], namespace, resource)
            env = {**env, "KUBECONFIG": str(kubeconfig), "PF_CONTROLLER_POST_EVENTS": "false"}
            argv = ["controller", "--standalone", "--ready-file", str(ready)]
        self._add("controller", [*PUNCHINGFIST, *argv], env)

    def _add(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.processes[name] = Process(
            name, argv, env, self.logs / f"{name}.log", cwd=REPO, stop_signal=stop_signal
        )

    # -- waiting -----------------------------------------------------------------------------

    def _alive(self, name: str) -> None:
        process = self.processes[name]
        if process.popen is not None and process.popen.poll() is not None:
            tail = process.log()[-3000:]
            raise AssertionError(f"{name} exited with {process.popen.returncode}:\n{tail}")

    def wait_http(self, url: str, name: str, timeout: float = 40.0) -> None:
        def answers() -> bool:
            self._alive(name)
            return _answers(url)

        wait_for(answers, timeout, f"{name} at {url}", interval=0.1, ignoring=(httpx.HTTPError,))

    def wait_redis(self, timeout: float = 20.0) -> None:
        import redis

        def pong() -> bool:
            self._alive("redis")
            client = redis.Redis.from_url(self.redis_url, socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()

        wait_for(pong, timeout, "redis to answer PING", interval=0.05, ignoring=(redis.RedisError,))

    def wait_controller_ready(self, timeout: float = 40.0) -> None:
        ready = self.workdir / "controller.ready"

        def stored() -> bool:
            self._alive("controller")
            return ready.exists()

        wait_for(stored, timeout, "the controller to store the resources", interval=0.05)

    def wait_workers(
        self, names: Sequence[str] = ("engine", "notifier"), timeout: float = 60.0
    ) -> None:
        """Until each named Celery worker answers a ping on the broker."""
        import kombu.exceptions
        import redis
        from celery import Celery

        app = Celery(broker=self.redis_url)
        try:

            def answered() -> bool:
                for name in names:
                    self._alive(name)
                replies = app.control.ping(timeout=0.5)
                seen = {host.split("@", 1)[0] for reply in replies for host in reply}
                return all(any(name in host for host in seen) for name in names)

            # A broker that has just restarted may drop the first connections.
            wait_for(
                answered,
                timeout,
                f"workers {list(names)} to answer a ping",
                interval=0.2,
                ignoring=(redis.RedisError, kombu.exceptions.OperationalError, OSError),
            )
        finally:
            app.close()

    # -- fault shorthands (the fault tests build on these) ------------------------------------

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def stop(self, name: str) -> None:
        self.processes[name].stop()

    def restart(self, name: str, wait: bool = True) -> None:
        """Stop (SIGTERM) and start again; ``kill`` first for a crash and restart."""
        process = self.processes[name]
        process.stop()
        process.start()
        if wait:
            self.wait_started(name)

    def start_again(self, name: str, wait: bool = True) -> None:
        """Start a process that was stopped or killed."""
        self.processes[name].start()
        if wait:
            self.wait_started(name)

    def wait_started(self, name: str) -> None:
        if name == "redis":
            self.wait_redis()
        elif name == "ingest":
            self.wait_http(f"{self.ingest_url}/readyz", "ingest")
        elif name == "alertmanager":
            self.wait_http(f"{self.alertmanager_url}/-/ready", "alertmanager")
        elif name in ("engine", "notifier"):
            self.wait_workers([name])
        elif name == "controller":
            self.wait_controller_ready()
        elif name == "postgres":
            self.wait_postgres()

    def kill_engine(self) -> None:
        self.kill("engine")

    def restart_engine(self) -> None:
        self.restart("engine")

    def kill_notifier(self) -> None:
        self.kill("notifier")

    def restart_notifier(self) -> None:
        self.restart("notifier")

    def kill_ingest(self) -> None:
        self.kill("ingest")

    def restart_ingest(self) -> None:
        self.restart("ingest")

    def stop_redis(self) -> None:
        self.stop("redis")

    def start_redis(self) -> None:
        self.start_again("redis")

    def restart_redis(self) -> None:
        self.restart("redis")

    def kill_redis(self) -> None:
        self.kill("redis")

    def restart_postgres(self) -> None:
        """Only with ``postgres="private"``: the machine's server is not ours to stop."""
        assert self.postgres_mode == "private", 'restart_postgres needs postgres="private"'
        self.restart("postgres")

    # -- AlertManager: the only way alerts come in --------------------------------------------

    def fire(self, *alerts: Mapping[str, Any]) -> None:
        """POST alerts (``labels``, ``annotations``, optional ``startsAt``) to AlertManager."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        body = [
            {
                "labels": dict(alert["labels"]),
                "annotations": dict(alert.get("annotations") or {}),
                "startsAt": alert.get("startsAt") or now,
                "generatorURL": alert.get("generatorURL", "http://prometheus.example/graph"),
                **({"endsAt": alert["endsAt"]} if alert.get("endsAt") else {}),
            }
            for alert in alerts
        ]
        answer = self.http.post(f"{self.alertmanager_url}/api/v2/alerts", json=body)
        assert answer.status_code == 200, answer.text

    def resolve(self, *alerts: Mapping[str, Any]) -> None:
        """End alerts in AlertManager (``endsAt`` now unless given): it then sends them
        ``resolved``."""
        ends = dt.datetime.now(dt.UTC).isoformat()
        self.fire(*({"endsAt": ends, **alert} for alert in alerts))

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        answer = self.http.get(f"{self.alertmanager_url}/api/v2/alerts")
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found

    # -- the HTTP API ------------------------------------------------------------------------

    def api(
        self, method: str, path: str, body: Any = None, token: str = API_TOKEN
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return self.http.request(method, self.ingest_url + path, json=body, headers=headers)

    def get(self, path: str) -> Any:
        answer = self.api("GET", path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def alerts(self, **query: str) -> list[dict[str, Any]]:
        """Every alert the API lists (all pages), newest first."""
        items: list[dict[str, Any]] = []
        params = {"limit": "200", **query}
        while True:
            page = self.get("/api/v1/alerts?" + urllib.parse.urlencode(params))
            items += page["items"]
            if not page.get("next"):
                return items
            params["cursor"] = page["next"]

    def alert(self, alert_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/api/v1/alerts/{alert_id}")
        return found

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/api/v1/runs/{run_id}")
        return found

    def approvals(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/api/v1/approvals")["approvals"]
        return found

    def decide(self, approval_id: str, **body: Any) -> httpx.Response:
        return self.api("POST", f"/api/v1/approvals/{approval_id}", body)

    def slack_click(self, approval_id: str, action: str, user: str = "U0ALICE") -> httpx.Response:
        """A Slack button click as Slack sends it: form-encoded, signed with the secret."""
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": "alice", "team_id": "T0E2E"},
            "team": {"id": "T0E2E", "domain": "e2e"},
            "actions": [
                {
                    "type": "button",
                    "action_id": action,
                    "block_id": "pf-approval",
                    "value": approval_id,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
            "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        timestamp = str(int(time.time()))
        digest = hmac.new(
            SLACK_SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return self.http.post(
            f"{self.ingest_url}/slack/interactions", content=body, headers=headers
        )

    # -- waiting on the story ----------------------------------------------------------------

    def wait_alerts(self, count: int, timeout: float = 60.0, **query: str) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (found := self.alerts(**query)) and len(found) >= count and found,
            timeout,
            f"{count} alert(s) {query or ''} in the API",
            interval=0.2,
        )

    def wait_run_finished(self, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
        return wait_for(
            lambda: (run := self.run(run_id))["phase"] in FINISHED and run,
            timeout,
            f"run {run_id} to finish",
            interval=0.2,
        )

    def wait_run_phase(self, run_id: str, phase: str, timeout: float = 90.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            if run["phase"] == phase:
                return run
            assert run["phase"] not in FINISHED, f"run ended {run['phase']}, not {phase}: {run}"
            return None

        return wait_for(reached, timeout, f"run {run_id} to be {phase}", interval=0.2)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        return wait_for(condition, timeout, what, interval=0.1)

    # -- the Kubernetes API double ------------------------------------------------------

    def cluster_writes(self) -> list[tuple[str, str]]:
        """(method, path) of every request to the API double that could change something."""
        with self.cluster.lock:
            calls = list(self.cluster.requests)
        return [(c.method, c.path) for c in calls if c.method not in ("GET", "HEAD")]

    # -- the store ---------------------------------------------------------------------------

    def sql(self, query: str, **params: Any) -> list[sa.Row[Any]]:
        """Read the database directly (counts the API does not show)."""
        assert self._db is not None
        with self._db.connect() as conn:
            return list(conn.execute(sa.text(query), params).all())

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608 - test tables

    # -- logs --------------------------------------------------------------------------------

    def log_files(self) -> Iterator[Path]:
        yield from sorted(self.logs.glob("*.log"))
