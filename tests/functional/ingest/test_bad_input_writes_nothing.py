"""Every kind of bad request gets a clear 4xx and leaves the database untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.functional.ingest.conftest import load_fixture, mutated, table_counts

EMPTY = {"alerts": 0, "source_events": 0, "alert_source_events": 0, "workflow_runs": 0, "outbox": 0}


def test_unknown_path_is_404(post: Callable[..., Any], engine: sa.Engine) -> None:
    response = post(load_fixture("01-firing-single.json"), path="/webhook/nobody")
    assert response.status_code == 404
    assert "no Source listens on /webhook/nobody" in response.json["error"]
    assert table_counts(engine) == EMPTY


@pytest.mark.parametrize("token", [None, "", "wrong", "s3cr3t-test-token-and-more", "s3cr3t"])
def test_missing_or_wrong_token_is_401(
    post: Callable[..., Any], engine: sa.Engine, token: str | None
) -> None:
    response = post(load_fixture("01-firing-single.json"), token=token)
    assert response.status_code == 401
    assert "bearer token" in response.json["error"]
    assert table_counts(engine) == EMPTY


def test_basic_auth_scheme_is_refused(client: Any, engine: sa.Engine) -> None:
    response = client.post(
        "/webhook/alertmanager",
        data=json.dumps(load_fixture("01-firing-single.json")),
        headers={"Content-Type": "application/json", "Authorization": "Basic czNjcjN0"},
    )
    assert response.status_code == 401
    assert table_counts(engine) == EMPTY


def test_wrong_content_type_is_415(post: Callable[..., Any], engine: sa.Engine) -> None:
    response = post(json.dumps(load_fixture("01-firing-single.json")), content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json["error"]
    assert table_counts(engine) == EMPTY


def test_malformed_json_is_400(post: Callable[..., Any], engine: sa.Engine) -> None:
    response = post(b'{"version": "4", "alerts": [')
    assert response.status_code == 400
    assert "not valid JSON" in response.json["error"]
    assert table_counts(engine) == EMPTY


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": "3"}, "version"),
        ({"status": "sleeping"}, "status"),
        ({"alerts": "nope"}, "alerts"),
    ],
)
def test_schema_errors_are_422_and_name_the_field(
    post: Callable[..., Any], engine: sa.Engine, change: dict[str, Any], field: str
) -> None:
    response = post(mutated("01-firing-single.json", **change))
    assert response.status_code == 422
    assert field in response.json["fields"]
    assert field in response.json["error"]
    assert table_counts(engine) == EMPTY


def test_bad_alert_is_refused_alone_and_named_with_its_index(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    body = load_fixture("03-firing-group-of-2.json")
    body["alerts"][1]["startsAt"] = "yesterday"
    response = post(body)
    # One bad alert must not cost its group: the good one is recorded.
    assert response.status_code == 200
    assert (response.json["received"], response.json["new"], response.json["refused"]) == (2, 1, 1)
    assert response.json["refusals"] == [
        {
            "index": 1,
            "field": "alerts.1.startsAt",
            "code": "invalid",
            "reason": "alerts.1.startsAt: Not a valid RFC 3339 timestamp.",
        }
    ]
    assert table_counts(engine) == {
        **EMPTY,
        "alerts": 1,
        "source_events": 1,
        "alert_source_events": 1,
        "workflow_runs": 1,
        "outbox": 1,
    }
    with engine.connect() as conn:
        event = conn.execute(
            sa.text("SELECT alerts_received, alerts_refused, refusals FROM source_events")
        ).one()
    refusals = event.refusals if isinstance(event.refusals, list) else json.loads(event.refusals)
    assert (event.alerts_received, event.alerts_refused) == (2, 1)
    assert refusals == response.json["refusals"]


def test_group_with_no_recordable_alert_is_422_and_writes_nothing(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    body = load_fixture("03-firing-group-of-2.json")
    body["alerts"][0]["startsAt"] = "yesterday"
    body["alerts"][1]["labels"]["severity"] = "s" * 33
    response = post(body)
    assert response.status_code == 422
    assert response.json["refused"] == 2
    assert set(response.json["fields"]) == {"alerts.0.startsAt", "alerts.1.labels.severity"}
    assert table_counts(engine) == EMPTY


def test_body_over_the_limit_is_413(
    make_settings: Callable[..., Any], database_url: str, put_source: Any, tmp_path: Any
) -> None:
    from services.ingest.app import create_app

    secret = tmp_path / "secrets" / "am"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "token").write_text("s3cr3t-test-token")
    settings = make_settings(PF_DATABASE_URL=database_url, PF_INGEST_MAX_BODY_BYTES="1500")
    put_source()
    client = create_app(settings).test_client()
    body = load_fixture("03-firing-group-of-2.json")  # 1,946 bytes when indented
    response = client.post(
        "/webhook/alertmanager",
        data=json.dumps(body, indent=4),
        headers={"Content-Type": "application/json", "Authorization": "Bearer s3cr3t-test-token"},
    )
    assert response.status_code == 413
    assert "PF_INGEST_MAX_BODY_BYTES" in response.json["error"]
    from shared.db.engines import make_engine

    assert table_counts(make_engine(settings.database)) == EMPTY


def test_get_on_a_webhook_path_is_405(client: Any) -> None:
    response = client.get("/webhook/alertmanager")
    assert response.status_code == 405
    assert response.json["error"]


def test_unreadable_token_secret_is_503_so_alertmanager_retries(
    post: Callable[..., Any], engine: sa.Engine, settings: Any
) -> None:
    (settings.secrets_dir / "am" / "token").unlink()
    response = post(load_fixture("01-firing-single.json"))
    assert response.status_code == 503
    assert table_counts(engine) == EMPTY
