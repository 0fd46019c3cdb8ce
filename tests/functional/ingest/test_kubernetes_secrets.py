"""A Source's bearer token read from a Kubernetes Secret (the API double on loopback)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared import secrets
from shared.errors import SecretError
from tests.support.kube_api import Cluster, KubeApiDouble


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with KubeApiDouble() as double:
        token = base64.b64encode(b"from-the-cluster").decode()
        blank = base64.b64encode(b" \n").decode()
        double.state.create(
            "secrets",
            "monitoring",
            {"metadata": {"name": "am"}, "data": {"token": token, "blank": blank}},
        )
        yield double.state


@pytest.fixture
def reader(cluster: Cluster) -> Iterator[secrets.KubernetesSecrets]:
    read = secrets.KubernetesSecrets(host=cluster.url)
    yield read
    read.close()


def test_reads_the_key_of_the_secret_in_the_sources_namespace(
    reader: secrets.KubernetesSecrets, cluster: Cluster
) -> None:
    assert reader("monitoring", "am", "token") == "from-the-cluster"
    assert [(call.method, call.path) for call in cluster.requests] == [
        ("GET", "/api/v1/namespaces/monitoring/secrets/am")
    ]


@pytest.mark.parametrize(
    ("namespace", "name", "key", "needle"),
    [
        ("monitoring", "am", "password", "has no key 'password'"),
        ("monitoring", "am", "blank", "key 'blank' is empty"),
        ("monitoring", "missing", "token", r"secret monitoring/missing: 404 Not Found"),
        ("default", "am", "token", "404"),  # Secrets are per namespace
    ],
)
def test_missing_secret_or_key_is_a_secret_error(
    reader: secrets.KubernetesSecrets, namespace: str, name: str, key: str, needle: str
) -> None:
    with pytest.raises(SecretError, match=needle):
        reader(namespace, name, key)


def test_unreachable_api_server_is_a_secret_error() -> None:
    read = secrets.KubernetesSecrets(host="http://127.0.0.1:9")
    with pytest.raises(SecretError, match="cannot reach the Kubernetes API") as caught:
        read("monitoring", "am", "token")
    assert caught.value.__cause__ is not None  # the library's error, chained
    read.close()


def test_ingest_authenticates_with_the_cluster_secret(
    reader: secrets.KubernetesSecrets, make_settings: Any, database_url: str
) -> None:
    from services.ingest.app import create_app
    from shared.db import resources
    from shared.db.engines import make_engine, make_session_factory
    from tests.functional.ingest.conftest import load_fixture, source_spec

    settings = make_settings(PF_DATABASE_URL=database_url, PF_KUBERNETES_SECRETS="true")
    with make_session_factory(make_engine(settings.database)).begin() as session:
        resources.upsert(session, "Source", "monitoring", "alertmanager", source_spec())
    app = create_app(settings, secret_reader=reader)
    client = app.test_client()
    body = json.dumps(load_fixture("01-firing-single.json"))
    headers = {"Content-Type": "application/json"}
    wrong = client.post(
        "/webhook/alertmanager", data=body, headers={**headers, "Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    right = client.post(
        "/webhook/alertmanager",
        data=body,
        headers={**headers, "Authorization": "Bearer from-the-cluster"},
    )
    assert right.status_code == 200
