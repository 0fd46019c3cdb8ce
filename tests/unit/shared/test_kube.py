"""shared.kube: where the client's configuration comes from, and what its errors become."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config

from shared import kube
from shared.errors import ConfigError, PermanentError, TemporaryError

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: test
clusters: [{name: test, cluster: {server: 'https://kube.test:6443'}}]
users: [{name: tester, user: {token: the-token}}]
contexts: [{name: test, context: {cluster: test, user: tester}}]
"""


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Not in a pod, no kubeconfig; returns where a kubeconfig would go."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    path = tmp_path / "kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(path))
    # The client reads $KUBECONFIG once, at import.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path


def api_exception(status: int, reason: str, body: str = "", **headers: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = body
    exc.headers = headers
    return exc


def translate(exc: BaseException) -> kube.KubeError:
    with pytest.raises(kube.KubeError) as caught, kube.translated("read Secret ns/am"):
        raise exc
    assert caught.value.__cause__ is exc
    return caught.value


def test_importing_the_module_does_not_import_the_client() -> None:
    code = "import sys, shared.kube; print('kubernetes' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_an_explicit_host_gets_no_credentials(no_cluster: Path) -> None:
    api = kube.api_client("http://127.0.0.1:8001/", retries=0)
    assert api.configuration.host == "http://127.0.0.1:8001"
    assert api.configuration.retries == 0
    assert not api.configuration.api_key
    kube.close(api)


def test_the_kubeconfig_is_read_without_touching_the_global_default(no_cluster: Path) -> None:
    no_cluster.write_text(KUBECONFIG)
    before = client.Configuration.get_default_copy().host
    api = kube.api_client()
    assert api.configuration.host == "https://kube.test:6443"
    assert "Bearer the-token" in api.configuration.api_key.values()
    assert client.Configuration.get_default_copy().host == before
    kube.close(api)


def test_no_configuration_is_a_config_error(no_cluster: Path) -> None:
    with pytest.raises(kube.KubeConfigError, match="no Kubernetes configuration") as caught:
        kube.api_client()
    assert isinstance(caught.value, ConfigError)
    assert caught.value.__cause__ is not None


def test_may_be_configured_looks_where_the_client_looks(
    no_cluster: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not kube.may_be_configured()
    assert kube.may_be_configured("http://127.0.0.1:8001")
    no_cluster.write_text(KUBECONFIG)
    assert kube.may_be_configured()
    no_cluster.unlink()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kube.may_be_configured()


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, kube.NotFoundError),
        (409, kube.ConflictError),
        (403, kube.ApiPermanentError),
        (422, kube.ApiPermanentError),
    ],
)
def test_refusals_are_permanent_with_the_api_message(
    status: int, kind: type[kube.ApiPermanentError]
) -> None:
    body = json.dumps({"kind": "Status", "message": 'secrets "am" is forbidden'})
    error = translate(api_exception(status, "Refused", body))
    assert type(error) is kind
    assert isinstance(error, PermanentError)
    assert (error.status, error.reason) == (status, "Refused")
    assert str(error) == f'read Secret ns/am: {status} Refused: secrets "am" is forbidden'


@pytest.mark.parametrize("status", [500, 503, 429, 408, 0])
def test_server_trouble_is_temporary_after_retry_after(status: int) -> None:
    error = translate(api_exception(status, "Busy", "not json", **{"Retry-After": "7"}))
    assert type(error) is kube.ApiTemporaryError
    assert isinstance(error, TemporaryError)
    assert (error.status, error.delay) == (status, 7.0)
    assert str(error).endswith(": not json")


def test_gone_is_temporary_and_immediate() -> None:
    error = translate(api_exception(410, "Gone"))
    assert type(error) is kube.GoneError
    assert isinstance(error, kube.ApiTemporaryError)
    assert error.delay == 0


@pytest.mark.parametrize(
    "cause",
    [
        urllib3.exceptions.MaxRetryError(None, "/api", "refused"),  # type: ignore[arg-type]
        ConnectionRefusedError(111, "refused"),
    ],
)
def test_no_response_is_temporary(cause: BaseException) -> None:
    error = translate(cause)
    assert type(error) is kube.ApiTemporaryError
    assert error.status == 0
    assert str(error).startswith("read Secret ns/am: cannot reach the Kubernetes API: ")


def test_our_own_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="ours"), kube.translated("anything"):
        raise ValueError("ours")
