"""An ingest app on a real database (both backends) with one webhook Source."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from services.ingest.app import create_app
from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import Settings

FIXTURES = Path(__file__).parents[2] / "fixtures" / "alertmanager"
TOKEN = "s3cr3t-test-token"
# The read API's own token (PF_API_TOKEN_FILE), distinct from the webhook's.
API_TOKEN = "api-test-token"


def load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def source_spec(**config: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "config": {
            "authentication": {"type": "bearer", "secretRef": {"name": "am", "key": "token"}},
            **config,
        },
        "triggerWorkflow": "triage",
        "context": {"cluster": "test"},
    }


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str, tmp_path: Path) -> Settings:
    secret = tmp_path / "secrets" / "am"
    secret.mkdir(parents=True)
    (secret / "token").write_text(TOKEN + "\n")
    api_token = tmp_path / "api-token"
    api_token.write_text(API_TOKEN + "\n")
    return make_settings(PF_DATABASE_URL=database_url, PF_API_TOKEN_FILE=str(api_token))


@pytest.fixture
def engine(settings: Settings) -> sa.Engine:
    return make_engine(settings.database)


@pytest.fixture
def put_source(engine: sa.Engine) -> Callable[..., None]:
    def put(name: str = "alertmanager", namespace: str = "default", **spec: Any) -> None:
        body = spec or source_spec()
        with make_session_factory(engine).begin() as session:
            resources.upsert(session, "Source", namespace, name, body)

    return put


@pytest.fixture
def app(settings: Settings, put_source: Callable[..., None]) -> Flask:
    put_source()
    return create_app(settings)


class ReadApiClient(FlaskClient):
    """Sends the read API's bearer token on /api/ requests that do not set their own."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        path = args[0] if args and isinstance(args[0], str) else kwargs.get("path", "")
        headers = dict(kwargs.pop("headers", None) or {})
        if path.startswith("/api/") and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {API_TOKEN}"
        return super().open(*args, headers=headers, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = ReadApiClient
    return app.test_client()


@pytest.fixture
def post(client: FlaskClient) -> Callable[..., Any]:
    def send(
        body: Any,
        path: str = "/webhook/alertmanager",
        token: str | None = TOKEN,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post(path, data=data, headers=headers)

    return send


def table_counts(engine: sa.Engine) -> dict[str, int]:
    names = ["alerts", "source_events", "alert_source_events", "workflow_runs", "outbox"]
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
            for name in names
        }


def mutated(name: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture(name))
    body.update(changes)
    return body
