"""Who may post where, through ``punchingfist run``: the controller on a folder of
resource files and ingest under gunicorn, as ``make run`` starts them.

- Two Sources whose paths are spellings of one path (``/webhook/prod`` and
  ``/webhook/prod/``): an unauthenticated one once took the other's traffic. Now
  neither is served (409) and both are reported not ready, until one goes.
- An empty token file: ``Authorization: Bearer`` with nothing after it once passed.
  Now the Source answers 503 (AlertManager retries) and is reported not ready.
- A Source stored without an ``authentication`` block (by an older version) is not
  served to anyone.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from shared.db import migrate, resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.ingest import realserver
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(120)
TOKEN = "pr0d-t0ken"
BEARER = f"Bearer {TOKEN}"
WORKFLOW = """\
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: triage}
spec:
  steps: [{name: look, type: cli, command: [echo, hi]}]
"""
PROD = """\
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: prod}
spec:
  type: webhook
  config:
    path: /webhook/prod
    authentication: {type: bearer, secretRef: {name: prod, key: token}}
  triggerWorkflow: triage
"""
HIJACK = """\
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: hijack}
spec:
  type: webhook
  config:
    path: /webhook/prod/
    authentication: {type: none}
  triggerWorkflow: triage
"""


API_TOKEN = "read-api-t0ken"


def alerts(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/alerts",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        import json

        return len(json.loads(answer.read())["items"])


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    config, secrets = tmp_path / "config", tmp_path / "secrets"
    config.mkdir()
    (secrets / "prod").mkdir(parents=True)
    (secrets / "prod" / "token").write_text(TOKEN + "\n")
    (config / "workflow.yaml").write_text(WORKFLOW)
    (config / "prod.yaml").write_text(PROD)
    return config, secrets


def start_run(tmp_path: Path, config: Path, secrets: Path) -> tuple[list[str], dict[str, str]]:
    port = free_port()
    api_token = tmp_path / "api-token"
    api_token.write_text(API_TOKEN + "\n")
    env = realserver.env_for(
        tmp_path,
        PF_API_TOKEN_FILE=str(api_token),
        PF_SECRETS_DIR=str(secrets),
        PF_RESOURCE_REFRESH_SECONDS="0.2",
        PF_CONTROLLER_POLL_INTERVAL="0.2",
        PF_INGEST_BIND=f"127.0.0.1:{port}",
    )
    return ["run", "--config-dir", str(config)], env


def test_two_sources_on_one_path_serve_neither(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    config, secrets = folders
    (config / "hijack.yaml").write_text(HIJACK)
    argv, env = start_run(tmp_path, config, secrets)
    port = int(env["PF_INGEST_BIND"].rsplit(":", 1)[1])
    log = tmp_path / "run.log"
    with realserver.serving(argv, env, port, log):
        realserver.wait_status(port, "/webhook/prod", None, 409)
        for path in ("/webhook/prod", "/webhook/prod/", "/webhook//prod"):
            for authorization in (None, BEARER):
                status, answer, _ = realserver.post(port, path, authorization)
                assert status == 409, (path, authorization, answer)
                assert "more than one Source claims /webhook/prod" in str(answer["error"])
        assert alerts(port) == 0
        text = log.read_text()
        for name, other in (("prod", "hijack"), ("hijack", "prod")):
            assert any(
                "resource not ready" in line
                and f'resource="Source default/{name}"' in line
                and "reason=PathConflict" in line
                and f"Source default/{other}" in line
                for line in text.splitlines()
            ), f"{name} not reported naming {other}"
        # One of them goes: the path has one owner again, with its token.
        (config / "hijack.yaml").unlink()
        realserver.wait_status(port, "/webhook/prod/", None, 401)
        assert realserver.post(port, "/webhook/prod/", BEARER)[0] == 200
        assert realserver.post(port, "/webhook/prod", "Bearer wrong")[0] == 401
        assert alerts(port) == 1


def test_an_empty_token_file_refuses_every_caller(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    config, secrets = folders
    (secrets / "prod" / "token").write_text("  \n")
    argv, env = start_run(tmp_path, config, secrets)
    port = int(env["PF_INGEST_BIND"].rsplit(":", 1)[1])
    log = tmp_path / "run.log"
    with realserver.serving(argv, env, port, log):
        realserver.wait_status(port, "/webhook/prod", "Bearer ", 503)
        for authorization in ("Bearer ", "Bearer", "bearer  ", None, BEARER):
            status, answer, _ = realserver.post(port, "/webhook/prod", authorization)
            assert status == 503, (authorization, answer)
            assert "bearer token cannot be read" in str(answer["error"])
        assert alerts(port) == 0
        text = log.read_text()
        assert "is empty" in text
        assert any(
            "resource not ready" in line
            and "Source default/prod" in line
            and "reason=SecretNotFound" in line
            for line in text.splitlines()
        )
        (secrets / "prod" / "token").write_text(TOKEN)
        realserver.wait_status(port, "/webhook/prod", "Bearer ", 401)
        assert realserver.post(port, "/webhook/prod", BEARER)[0] == 200


def test_a_source_stored_without_authentication_is_not_served(tmp_path: Path) -> None:
    """A row written before authentication had to be explicit: 503, not open."""
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/pf.db"))
    migrate.upgrade(engine)
    with make_session_factory(engine).begin() as session:
        resources.upsert(session, "Source", "default", "legacy", {"type": "webhook", "config": {}})
    engine.dispose()
    port = free_port()
    api_token = tmp_path / "api-token"
    api_token.write_text(API_TOKEN + "\n")
    env = realserver.env_for(
        tmp_path, PF_SECRETS_DIR=str(tmp_path / "secrets"), PF_API_TOKEN_FILE=str(api_token)
    )
    argv = ["ingest", "--bind", f"127.0.0.1:{port}"]
    with realserver.serving(argv, env, port, tmp_path / "ingest.log"):
        status, answer, _ = realserver.post(port, "/webhook/legacy", None)
        assert status == 503
        assert "misconfigured" in str(answer["error"])
        assert alerts(port) == 0
    assert "authentication: {type: none}" in (tmp_path / "ingest.log").read_text()
