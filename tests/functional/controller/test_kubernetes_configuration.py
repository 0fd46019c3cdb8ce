"""The controller finds its cluster through ``shared.kube``, and says so when it cannot.

Before ``shared.kube`` the controller loaded its configuration into the ``kubernetes``
library's process-wide default, and without any configuration it died with the
library's traceback instead of a configuration error.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import kube_config

from services.controller import secrets as secret_checks
from shared import kube
from tests.support.kube_api import KubeApiDouble

ROOT = Path(__file__).parents[3]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[KubeApiDouble]:
    with KubeApiDouble() as double:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(double.kubeconfig())
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # The client reads $KUBECONFIG once, at import; point it at the double too.
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        yield double


def test_secret_checks_use_the_kubeconfig_and_leave_the_global_default_alone(
    cluster: KubeApiDouble,
) -> None:
    token = base64.b64encode(b"s3cret").decode()
    cluster.state.create("secrets", "default", {"metadata": {"name": "am"}, "data": {"t": token}})
    before = client.Configuration.get_default_copy().host
    api = secret_checks.kubernetes_api()
    try:
        check = secret_checks.kubernetes_check(api)
        assert check("default", "am", "t") is None
        assert check("default", "am", "other") == "Secret default/am has no key 'other'"
        assert check("default", "gone", "t") == "no Secret default/gone"
    finally:
        kube.close(api.api_client)
    assert client.Configuration.get_default_copy().host == before
    assert {call.caller for call in cluster.state.requests} == {"test-token"}


def test_a_failing_api_is_reported_in_the_check(cluster: KubeApiDouble) -> None:
    cluster.state.fail("GET", "/secrets/", 403, reason="Forbidden", message="not allowed")
    cluster.state.fail("GET", "/secrets/", 503, reason="ServiceUnavailable", message="later")
    api = secret_checks.kubernetes_api()
    try:
        check = secret_checks.kubernetes_check(api)
        forbidden = check("default", "am", "t")
        unavailable = check("default", "am", "t")
    finally:
        kube.close(api.api_client)
    assert forbidden == "Secret default/am cannot be read: 403 Forbidden: not allowed"
    assert unavailable == "Secret default/am cannot be read: 503 Service Unavailable: later"


def test_the_controller_without_a_cluster_stops_with_a_configuration_error(
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PF_", "KUBERNETES_", "KUBECONFIG"))
    }
    env.update(
        HOME=str(tmp_path),
        KUBECONFIG=str(tmp_path / "no-kubeconfig"),
        PF_DATABASE_URL=f"sqlite:///{tmp_path}/pf.db",
        PF_VAR_DIR=str(tmp_path / "var"),
        PF_LOG_FORMAT="text",
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.controller.cli", "controller"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "configuration error: no Kubernetes configuration" in done.stderr
    assert "Traceback" not in done.stderr
