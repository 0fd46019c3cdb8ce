"""The kopf controller for real, against an HTTP double of the Kubernetes API.

The controller runs in a thread exactly as ``punchingfist controller`` runs it
(login through $KUBECONFIG, discovery, list and watch, status patches); the test
plays kubectl on the double and looks at the database and at the objects' status.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kubernetes.config import kube_config

from services.controller import app
from shared.db import resources as db_resources
from shared.db.engines import make_engine, make_session_factory
from tests.support.kube_api import KubeApiDouble
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

WORKFLOW = {
    "metadata": {"name": "triage"},
    "spec": {"steps": [{"name": "look", "type": "cli", "command": ["echo", "hi"]}]},
}


OPEN = {"authentication": {"type": "none"}}
SECRET = {"name": "am-token", "key": "token"}


def source(name: str = "am", **spec: Any) -> dict[str, Any]:
    spec["config"] = {**OPEN, **spec.get("config", {})}
    return {
        "metadata": {"name": name},
        "spec": {"type": "webhook", "triggerWorkflow": "triage", **spec},
    }


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[KubeApiDouble]:
    double = KubeApiDouble().start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(double.kubeconfig())
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # The client reads $KUBECONFIG once, at import; point it at the double too.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    yield double
    double.stop()


class Controller:
    def __init__(self, cluster: KubeApiDouble, url: str, make_settings: Any) -> None:
        self.cluster = cluster
        self.config = make_settings(
            PF_DATABASE_URL=url,
            PF_CONTROLLER_STATUS_INTERVAL="0.5",
            PF_CONTROLLER_WATCH_TIMEOUT="5",
            PF_CONTROLLER_POST_EVENTS="false",
        )
        self.engine = make_engine(self.config.database)
        self.sessions = make_session_factory(self.engine)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Controller:
        self._stop.clear()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=app.run_kubernetes,
            args=(self.config,),
            kwargs={"standalone": True, "stop_flag": self._stop, "ready_flag": ready},
            daemon=True,
        )
        self._thread.start()
        assert ready.wait(15), "kopf did not become ready"
        return self

    def stop(self) -> None:
        # Let in-flight events settle first: kopf can start a timer for an event it
        # is still processing while it stops, and leave that timer's session open.
        quiet_since, seen = time.monotonic(), len(self.cluster.state.log)
        deadline = quiet_since + 3
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.3:
            time.sleep(0.05)
            if len(self.cluster.state.log) != seen:
                quiet_since, seen = time.monotonic(), len(self.cluster.state.log)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(20)
            assert not self._thread.is_alive(), "kopf did not stop"

    def spec(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        with self.sessions() as session:
            return db_resources.get_spec(session, kind, namespace, name)

    def status(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any]:
        obj = self.cluster.state.get(plural, namespace, name)
        return (obj or {}).get("status") or {}

    def condition(self, plural: str, name: str, type_: str = "Ready") -> dict[str, Any]:
        conditions = self.status(plural, name).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})


@pytest.fixture
def controller(cluster: KubeApiDouble, sqlite_url: str, make_settings: Any) -> Iterator[Controller]:
    running = Controller(cluster, sqlite_url, make_settings).start()
    yield running
    running.stop()
    running.engine.dispose()


def test_source_is_stored_and_reported_ready(
    cluster: KubeApiDouble, database_url: str, make_settings: Any
) -> None:
    running = Controller(cluster, database_url, make_settings).start()
    try:
        cluster.state.create("workflows", "default", WORKFLOW)
        cluster.state.create(
            "sources", "default", source(config={"matchers": ['env=~"prod|staging"']})
        )
        stored = wait_for(lambda: running.spec("Source", "am"), what="Source in the database")
        assert stored["config"]["path"] == "/webhook/am"
        assert stored["config"]["matchers"] == ['env=~"prod|staging"']
        assert stored["config"]["rateLimit"] == {"maxWorkflowStarts": 100, "windowSeconds": 60}
        wait_for(lambda: running.status("sources", "am").get("ready") is True, what="ready status")
        status = running.status("sources", "am")
        assert status["observedGeneration"] == 1
        assert status["eventsProcessed"] == 0
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Valid": "True",
            "Resolved": "True",
            "Stored": "True",
            "Ready": "True",
            # type: none is allowed, and said in status.
            "Authenticated": "False",
        }
        # The Workflow's own status patch may land after the Source's.
        wait_for(lambda: running.status("workflows", "triage").get("steps") == 1, what="steps")
        # Status went through the status subresource, as merge patches.
        assert any(plural == "sources" for plural, _, _ in cluster.state.status_patches)
        methods = {(call.method, call.path) for call in cluster.state.requests}
        assert (
            "PATCH",
            "/apis/punchingfist.io/v1alpha1/namespaces/default/sources/am/status",
        ) in methods
    finally:
        running.stop()
        running.engine.dispose()


def test_missing_workflow_is_not_ready_until_it_exists(
    controller: Controller, cluster: KubeApiDouble
) -> None:
    cluster.state.create("sources", "default", source())
    ready = wait_for(
        lambda: (
            controller.condition("sources", "am").get("reason") == "WorkflowNotFound"
            and controller.condition("sources", "am")
        ),
        what="WorkflowNotFound",
    )
    assert ready["status"] == "False"
    assert "spec.triggerWorkflow" in ready["message"]
    assert controller.status("sources", "am")["ready"] is False
    # Stored anyway; the timer notices the Workflow when it arrives.
    assert controller.spec("Source", "am") is not None
    cluster.state.create("workflows", "default", WORKFLOW)
    wait_for(
        lambda: controller.status("sources", "am").get("ready") is True,
        what="ready after the Workflow",
    )


def test_secret_reference_is_checked_through_the_api(
    controller: Controller, cluster: KubeApiDouble
) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    auth = {"authentication": {"secretRef": {"name": "am-token", "key": "token"}}}
    cluster.state.create("sources", "default", source(config=auth))
    wait_for(
        lambda: controller.condition("sources", "am").get("reason") == "SecretNotFound",
        what="SecretNotFound",
    )
    assert (
        "spec.config.authentication.secretRef" in controller.condition("sources", "am")["message"]
    )
    cluster.state.create(
        "secrets", "default", {"metadata": {"name": "am-token"}, "data": {"token": "c2VjcmV0"}}
    )
    wait_for(
        lambda: controller.status("sources", "am").get("ready") is True,
        what="ready with the secret",
    )


def test_update_and_delete_follow_the_cluster(
    controller: Controller, cluster: KubeApiDouble
) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create("sources", "default", source(config={"path": "/a"}))
    wait_for(lambda: (controller.spec("Source", "am") or {}).get("config", {}).get("path") == "/a")
    obj = cluster.state.get("sources", "default", "am")
    assert obj is not None
    assert "punchingfist.io/controller" in obj["metadata"]["finalizers"]
    cluster.state.update_spec("sources", "default", "am", source(config={"path": "/b"})["spec"])
    wait_for(lambda: controller.spec("Source", "am")["config"]["path"] == "/b", what="updated spec")
    wait_for(lambda: controller.status("sources", "am").get("observedGeneration") == 2)
    cluster.state.delete("sources", "default", "am")
    wait_for(lambda: controller.spec("Source", "am") is None, what="removed from the database")
    # The finalizer is released, so the object is really gone.
    wait_for(lambda: cluster.state.get("sources", "default", "am") is None, what="object deleted")
    assert controller.spec("Workflow", "triage") is not None


def test_invalid_spec_is_reported_with_the_field(
    controller: Controller, cluster: KubeApiDouble
) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create("sources", "default", source(config={"matchers": ['job=~"(("']}))
    wait_for(
        lambda: controller.condition("sources", "am", "Valid").get("status") == "False",
        what="Invalid",
    )
    valid = controller.condition("sources", "am", "Valid")
    assert valid["reason"] == "Invalid"
    assert "spec.config.matchers.0" in valid["message"]
    assert controller.status("sources", "am")["ready"] is False
    assert controller.spec("Source", "am") is None


def test_resumes_after_a_restart(
    cluster: KubeApiDouble, sqlite_url: str, make_settings: Any
) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create(
        "sinks", "default", {"metadata": {"name": "out"}, "spec": {"type": "stdout"}}
    )
    first = Controller(cluster, sqlite_url, make_settings).start()
    wait_for(lambda: first.spec("Sink", "out"), what="Sink stored")
    first.stop()
    # Deleted from the database behind the controller's back (a fresh database).
    with first.sessions.begin() as session:
        session.execute(sa.text("DELETE FROM resources"))
    second = Controller(cluster, sqlite_url, make_settings).start()
    try:
        wait_for(lambda: second.spec("Sink", "out"), what="Sink stored again")
        wait_for(lambda: second.status("sinks", "out").get("messagesSent") == 0)
    finally:
        second.stop()
        first.engine.dispose()
        second.engine.dispose()


def test_two_sources_on_one_path_are_both_not_ready_until_one_goes(
    controller: Controller, cluster: KubeApiDouble
) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create(
        "secrets", "default", {"metadata": {"name": "am-token"}, "data": {"token": "c2VjcmV0"}}
    )
    bearer = {"path": "/webhook/prod", "authentication": {"secretRef": SECRET}}
    cluster.state.create("sources", "default", source("prod", config=bearer))
    wait_for(lambda: controller.status("sources", "prod").get("ready") is True, what="prod ready")
    cluster.state.create("sources", "default", source("hijack", config={"path": "/webhook/prod/"}))

    def conflict_named(name: str, other: str) -> bool:
        ready = controller.condition("sources", name)
        return ready.get("reason") == "PathConflict" and f"default/{other}" in ready["message"]

    wait_for(lambda: conflict_named("hijack", "prod"), what="hijack names prod")
    # prod learns it at its next refresh (PF_CONTROLLER_STATUS_INTERVAL, 0.5 s here).
    wait_for(lambda: conflict_named("prod", "hijack"), what="prod names hijack")
    assert controller.status("sources", "prod")["ready"] is False
    assert controller.status("sources", "hijack")["ready"] is False
    cluster.state.delete("sources", "default", "hijack")
    wait_for(lambda: controller.status("sources", "prod").get("ready") is True, what="prod again")


def test_an_empty_secret_is_not_a_token(controller: Controller, cluster: KubeApiDouble) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create(
        "secrets", "default", {"metadata": {"name": "am-token"}, "data": {"token": "IAo="}}
    )
    cluster.state.create(
        "sources", "default", source(config={"authentication": {"secretRef": SECRET}})
    )
    ready = wait_for(
        lambda: (
            controller.condition("sources", "am").get("reason") == "SecretNotFound"
            and controller.condition("sources", "am")
        ),
        what="empty secret refused",
    )
    assert "is empty" in ready["message"]
    assert controller.status("sources", "am")["ready"] is False


def test_no_authentication_is_reported_as_a_warning_condition(
    controller: Controller, cluster: KubeApiDouble
) -> None:
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create("sources", "default", source())
    wait_for(lambda: controller.status("sources", "am").get("ready") is True, what="ready")
    authenticated = controller.condition("sources", "am", "Authenticated")
    assert authenticated["status"] == "False"
    assert authenticated["reason"] == "AuthenticationDisabled"


def test_kopf_handlers_count_reconciliations_on_metrics(
    cluster: KubeApiDouble, sqlite_url: str, make_settings: Any
) -> None:
    from tests.support.ports import free_port
    from tests.support.scrape import scrape

    port = free_port()
    running = Controller(cluster, sqlite_url, make_settings)
    running.config = make_settings(
        PF_DATABASE_URL=sqlite_url,
        # No timer refreshes during the test: each count is one event.
        PF_CONTROLLER_STATUS_INTERVAL="3600",
        PF_CONTROLLER_WATCH_TIMEOUT="5",
        PF_CONTROLLER_POST_EVENTS="false",
        PF_CONTROLLER_METRICS_BIND=f"127.0.0.1:{port}",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    name = "punchingfist_controller_reconciles_total"
    running.start()
    try:
        # The counters are the process's (one registry): count from here.
        before = scrape(url)

        def count(kind: str, result: str) -> float:
            return scrape(url).value(name, kind=kind, mode="kubernetes", result=result) - (
                before.value(name, kind=kind, mode="kubernetes", result=result)
            )

        cluster.state.create("sources", "default", source())  # its Workflow is missing
        wait_for(lambda: count("Source", "not_ready") == 1, what="the Source counted not ready")
        cluster.state.create("workflows", "default", WORKFLOW)
        wait_for(lambda: count("Workflow", "ready") == 1, what="the Workflow counted ready")
        assert count("Source", "ready") == 0
    finally:
        running.stop()
        running.engine.dispose()
    # The endpoint goes with the controller.
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        scrape(url, timeout=2)
