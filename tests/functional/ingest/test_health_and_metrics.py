"""/healthz, /readyz (database and broker) and the alert counters on /metrics."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Any

from services.ingest.app import create_app
from tests.functional.ingest.conftest import load_fixture


def _metric(text: str, name: str, source: str = "alertmanager") -> float:
    found = re.search(rf'^{name}_total{{source="{source}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    assert found, f"{name} not exported"
    return float(found.group(1))


def test_counters_follow_what_happened(
    post: Callable[..., Any], client: Any, put_source: Callable[..., None]
) -> None:
    from tests.functional.ingest.conftest import source_spec

    put_source(**source_spec(filters={"severity": ["warning"]}))
    post(load_fixture("05-group-mixed-1-resolved-2-firing.json"))  # web-3 critical filtered
    post(load_fixture("03-firing-group-of-2.json"))  # both repeats
    text = client.get("/metrics").data.decode()
    assert _metric(text, "punchingfist_alerts_received") == 5
    assert _metric(text, "punchingfist_alerts_filtered") == 1
    assert _metric(text, "punchingfist_alerts_deduplicated") == 2
    assert _metric(text, "punchingfist_workflows_started") == 1
    # Request metrics from prometheus-flask-exporter are there too.
    assert "flask_http_request_duration_seconds" in text


def test_outbox_backlog_gauge(post: Callable[..., Any], app: Any, client: Any) -> None:
    post(load_fixture("03-firing-group-of-2.json"))
    from services.ingest.state import EXTENSION

    app.extensions[EXTENSION].relay_once()  # flushes the batched publish marks
    text = client.get("/metrics").data.decode()
    # memory:// publishing succeeded, so nothing is left unpublished.
    assert re.search(r"^punchingfist_outbox_backlog 0\.0$", text, re.MULTILINE)


def test_healthz_and_readyz(client: Any) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "sources": "ok", "broker": "ok"}
    assert ready.json["webhookPaths"] == 1


def test_readyz_reports_a_down_broker(make_settings: Callable[..., Any], database_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(
        PF_DATABASE_URL=database_url, PF_BROKER_URL=f"redis://127.0.0.1:{port}/0"
    )
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["broker"].startswith("unavailable")


def test_database_down_is_503_so_alertmanager_retries(
    make_settings: Callable[..., Any], tmp_path: Any
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(PF_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/nothing")
    client = create_app(settings).test_client()
    response = client.post(
        "/webhook/alertmanager",
        data=json.dumps(load_fixture("01-firing-single.json")),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 503
    assert "database unavailable" in response.json["error"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"].startswith("unavailable")
