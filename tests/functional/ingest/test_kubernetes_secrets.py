"""A Source's bearer token read from a Kubernetes Secret (API served by a local double)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared import secrets
from shared.errors import SecretError

SECRETS = {("monitoring", "am"): {"token": "from-the-cluster", "blank": " \n"}}


class _SecretsAPI(BaseHTTPRequestHandler):
    requests: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.requests.append(self.path)
        parts = self.path.split("?")[0].strip("/").split("/")
        # /api/v1/namespaces/<ns>/secrets/<name>
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            data = SECRETS.get((parts[3], parts[5]))
            if data is not None:
                body = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": parts[5], "namespace": parts[3]},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
                }
                return self._send(200, body)
        return self._send(
            404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
        )

    def _send(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def reader(api_server: str) -> Iterator[secrets.KubernetesSecrets]:
    read = secrets.KubernetesSecrets(host=api_server)
    yield read
    read.close()


def test_reads_the_key_of_the_secret_in_the_sources_namespace(
    reader: secrets.KubernetesSecrets,
) -> None:
    assert reader("monitoring", "am", "token") == "from-the-cluster"
    assert "/api/v1/namespaces/monitoring/secrets/am" in _SecretsAPI.requests


@pytest.mark.parametrize(
    ("namespace", "name", "key", "needle"),
    [
        ("monitoring", "am", "password", "has no key 'password'"),
        ("monitoring", "am", "blank", "key 'blank' is empty"),
        ("monitoring", "missing", "token", "404"),
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
    with pytest.raises(SecretError, match="unreachable"):
        read("monitoring", "am", "token")
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
