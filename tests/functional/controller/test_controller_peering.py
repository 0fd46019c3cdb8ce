"""Two controller replicas against one API server: only one works, the other takes over.

Each replica is a real ``python -m services.controller.cli controller`` process (no
``--standalone``) with its own identity (``POD_ID``), its own peering priority and
its own bearer token in its kubeconfig, so the API double can tell who sent each
request. They share the double, the ``ClusterKopfPeering`` object from
k8s/crds/kopf-peering.yaml and one database. Peering lifetimes are a few seconds so
that a replica that dies without a word is written off quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.db import resources as db_resources
from shared.db.engines import make_engine, make_session_factory
from shared.resources.schemas import KINDS
from shared.settings import DatabaseSettings
from tests.support.kube_api import Call, KubeApiDouble
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[3]
PEERING_MANIFEST = ROOT / "k8s" / "crds" / "kopf-peering.yaml"
PEERING = "punchingfist"
PEERING_PATH = f"/apis/kopf.dev/v1/clusterkopfpeerings/{PEERING}"
# Seconds a replica's peering record lives; renewed every second.
LIFETIME = 3
WORKFLOW: dict[str, Any] = {
    "metadata": {"name": "triage"},
    "spec": {"steps": [{"name": "look", "type": "cli", "command": ["echo", "hi"]}]},
}
SOURCE: dict[str, Any] = {
    "metadata": {"name": "am"},
    "spec": {
        "type": "webhook",
        "triggerWorkflow": "triage",
        "config": {"path": "/a", "authentication": {"type": "none"}},
    },
}
SOURCE_STATUS = "/apis/punchingfist.io/v1alpha1/namespaces/default/sources/am/status"


class Replica:
    """One controller process; ``name`` is its peering identity and its API token."""

    def __init__(
        self, name: str, priority: int, cluster: KubeApiDouble, database_url: str, tmp: Path
    ) -> None:
        self.name = name
        self.priority = priority
        self.cluster = cluster
        kubeconfig = tmp / f"kubeconfig-{name}"
        kubeconfig.write_text(cluster.kubeconfig().replace("test-token", name))
        self.log_path = tmp / f"{name}.log"
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PF_", "KUBERNETES_", "POD_ID", "KUBECONFIG"))
        }
        self.env = {
            **inherited,
            "KUBECONFIG": str(kubeconfig),
            "POD_ID": name,
            "PF_DATABASE_URL": database_url,
            "PF_VAR_DIR": str(tmp / "var"),
            "PF_SECRETS_DIR": str(tmp / "secrets"),
            "PF_BROKER_URL": "memory://",
            "PF_CONTROLLER_PRIORITY": str(priority),
            "PF_CONTROLLER_PEERING_LIFETIME": str(LIFETIME),
            "PF_CONTROLLER_STATUS_INTERVAL": "1",
            "PF_CONTROLLER_WATCH_TIMEOUT": "5",
            "PF_CONTROLLER_POST_EVENTS": "false",
            "PF_LOG_FORMAT": "text",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.controller.cli", "controller"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"{self.name} did not stop on {sig!r}:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def calls(self) -> list[Call]:
        return self.cluster.state.calls_by(self.name)

    def resource_patches(self) -> list[Call]:
        """PATCHes of punchingfist.io objects: handling, as opposed to peering."""
        return [
            call
            for call in self.calls()
            if call.method == "PATCH" and call.path.startswith("/apis/punchingfist.io/")
        ]

    def wait_in_log(self, text: str, timeout: float = 10.0) -> None:
        try:
            wait_for(lambda: text in self.log(), timeout, f"{self.name} to log {text!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{self.log()[-3000:]}") from None


def peers(cluster: KubeApiDouble) -> dict[str, Any]:
    peering = cluster.state.get("clusterkopfpeerings", "", PEERING) or {}
    return dict(peering.get("status") or {})


@pytest.fixture
def cluster() -> Iterator[KubeApiDouble]:
    manifests = list(yaml.safe_load_all(PEERING_MANIFEST.read_text()))
    crd = next(m for m in manifests if m["metadata"]["name"] == "clusterkopfpeerings.kopf.dev")
    # The double keeps the peers in the object's own status, as the CRD has no
    # status subresource; kopf patches them through the object's endpoint.
    assert all("subresources" not in version for version in crd["spec"]["versions"])
    peering = next(m for m in manifests if m["kind"] == "ClusterKopfPeering")
    assert peering["metadata"]["name"] == PEERING
    double = KubeApiDouble().start()
    double.state.create("clusterkopfpeerings", "", peering)
    yield double
    double.stop()


@pytest.fixture
def replicas(
    cluster: KubeApiDouble, sqlite_url: str, tmp_path: Path
) -> Iterator[tuple[Replica, Replica]]:
    """(high, low) by priority, started together (low a moment first), both peered."""
    high = Replica("replica-high", 200, cluster, sqlite_url, tmp_path)
    low = Replica("replica-low", 100, cluster, sqlite_url, tmp_path)
    low.start()
    high.start()
    try:
        wait_for(
            lambda: {high.name, low.name} <= set(peers(cluster)),
            15,
            "both replicas in the peering object",
        )
        # Whichever came first, the higher priority works (watches the resources) and
        # the lower one stands by: it starts paused, and if it saw the peering object
        # before the other's record it resumed and paused again, closing its watches.
        wait_for(lambda: cluster.state.watching(high.name, "sources"), 10, "high active")
        wait_for(
            lambda: not any(cluster.state.watching(low.name, kind.plural) for kind in KINDS),
            10,
            "low paused",
        )
        yield high, low
    finally:
        for replica in (high, low):
            if replica.process is not None and replica.process.poll() is None:
                replica.stop(signal.SIGKILL)


@pytest.fixture
def stored(sqlite_url: str) -> Iterator[Callable[[], dict[str, Any] | None]]:
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    sessions = make_session_factory(engine)

    def source_spec() -> dict[str, Any] | None:
        with sessions() as session:
            return db_resources.get_spec(session, "Source", "default", "am")

    yield source_spec
    engine.dispose()


def source_status(cluster: KubeApiDouble) -> dict[str, Any]:
    return dict((cluster.state.get("sources", "default", "am") or {}).get("status") or {})


def only_one_handles(
    cluster: KubeApiDouble, high: Replica, low: Replica, stored: Callable[[], Any]
) -> None:
    before = len(low.calls())
    cluster.state.create("workflows", "default", WORKFLOW)
    cluster.state.create("sources", "default", SOURCE)
    wait_for(stored, what="the Source in the database")
    wait_for(lambda: source_status(cluster).get("ready") is True, what="the Source ready")
    # Time for the paused replica to misbehave, were it going to: a few keep-alives
    # and status refreshes.
    time.sleep(1.5)
    assert ("PATCH", SOURCE_STATUS) in {(c.method, c.path) for c in high.resource_patches()}
    assert low.resource_patches() == [], low.log()
    # Paused, it did not even list or watch the resources (it may have before it saw
    # the other replica's record, while there was nothing to handle).
    assert not [c for c in low.calls()[before:] if c.path.startswith("/apis/punchingfist.io/")]
    # Both kept their peering records fresh, through the object (no /status there).
    for replica in (high, low):
        assert ("PATCH", PEERING_PATH) in {(c.method, c.path) for c in replica.calls()}


def survivor_takes_over(cluster: KubeApiDouble, low: Replica, stored: Callable[[], Any]) -> None:
    # Changed while no replica may be active: the survivor handles it on taking over.
    cluster.state.update_spec(
        "sources",
        "default",
        "am",
        {**SOURCE["spec"], "config": {**SOURCE["spec"]["config"], "path": "/b"}},
    )
    wait_for(lambda: cluster.state.watching(low.name, "sources"), 10, "the survivor active")
    wait_for(lambda: (stored() or {}).get("config", {}).get("path") == "/b", what="/b stored")
    wait_for(lambda: source_status(cluster).get("observedGeneration") == 2, what="generation 2")
    assert ("PATCH", SOURCE_STATUS) in {(c.method, c.path) for c in low.resource_patches()}


def test_only_the_highest_priority_works_and_a_graceful_exit_hands_over(
    cluster: KubeApiDouble, replicas: tuple[Replica, Replica], stored: Callable[[], Any]
) -> None:
    high, low = replicas
    only_one_handles(cluster, high, low, stored)
    assert high.stop(signal.SIGTERM) == 0, high.log()
    # On the way out the replica removes its own record: no need to wait for expiry.
    assert high.name not in peers(cluster)
    assert low.name in peers(cluster)
    survivor_takes_over(cluster, low, stored)


def test_a_killed_replica_expires_and_the_other_takes_over(
    cluster: KubeApiDouble, replicas: tuple[Replica, Replica], stored: Callable[[], Any]
) -> None:
    high, low = replicas
    only_one_handles(cluster, high, low, stored)
    high.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    # No goodbye: the record stays until its lifetime runs out.
    assert high.name in peers(cluster)
    survivor_takes_over(cluster, low, stored)
    assert time.monotonic() - killed_at < LIFETIME + 5
    # The survivor cleaned the dead replica's record away.
    wait_for(lambda: high.name not in peers(cluster), 5, "the dead record removed")
