"""The OpenAPI document and the Flask routes describe the same API (drift check).

Every route of the ingest app (methods included) is a documented operation, and
every documented operation is a route: a view added without its document entry, or
an entry left behind by a removed view, fails here. The answers' shapes are checked
against the real server by the schemathesis run of ``tests/e2e/test_bad_input.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask

from services.ingest import openapi
from services.ingest.app import create_app
from shared.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
MAX_BODY = 123_456


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> Flask:
    settings = make_settings(
        PF_DATABASE_URL=f"sqlite:///{tmp_path}/pf.db", PF_INGEST_MAX_BODY_BYTES=str(MAX_BODY)
    )
    return create_app(settings)


def _routes(app: Flask) -> set[tuple[str, str]]:
    return {
        (openapi.documented_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in openapi.UNDOCUMENTED_ENDPOINTS
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_route_is_documented_and_every_documented_path_is_a_route(app: Flask) -> None:
    document = openapi.document(MAX_BODY)
    routes, operations = _routes(app), _operations(document)
    assert routes - operations == set(), "routes missing from the OpenAPI document"
    assert operations - routes == set(), "documented operations that no route serves"
    # The webhook's catch-all rule is there, under the path the document gives it.
    assert ("/webhook/{source}", "post") in routes
    assert ("/metrics", "get") in routes


def test_the_served_document_is_the_generated_one(app: Flask) -> None:
    client = app.test_client()
    assert client.get(openapi.DOCUMENT_PATH).status_code == 403  # the read API is off
    document = openapi.document(MAX_BODY)
    assert (
        str(MAX_BODY)
        in document["paths"]["/webhook/{source}"]["post"]["responses"]["413"]["description"]
    )


def test_request_bodies_come_from_the_schemas_that_load_them() -> None:
    schemas = openapi.document(MAX_BODY)["components"]["schemas"]
    notification, alert = schemas["Notification"], schemas["Alert"]
    assert notification["properties"]["version"]["enum"] == ["4"]
    assert set(notification["required"]) == {"version", "status", "alerts"}
    assert notification["properties"]["alerts"]["items"] == {"$ref": "#/components/schemas/Alert"}
    assert alert["properties"]["startsAt"]["format"] == "date-time"
    assert alert["properties"]["labels"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "minProperties": 1,
    }
    # ECMA 262 patterns: Python's \Z is not one.
    assert alert["properties"]["fingerprint"]["pattern"] == "^[0-9a-f]{1,64}$"
    assert set(schemas["DecisionRequest"]["properties"]) == {"decision", "by", "comment"}
    # Answers refuse keys they do not list, so a view that adds one fails conformance.
    assert schemas["AlertView"]["additionalProperties"] is False
    assert set(schemas["AlertView"]["required"]) == set(schemas["AlertView"]["properties"])


def test_schemathesis_reads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(openapi.document(MAX_BODY))
    labels = sorted(result.ok().label for result in schema.get_all_operations())
    assert len(labels) == len(_operations(openapi.document(MAX_BODY)))


def test_every_operation_documents_what_gunicorn_refuses_before_any_route() -> None:
    # A 5,000-character query string is a 414 from gunicorn on any operation; the
    # document lacked it, so schemathesis saw an undocumented status.
    document = openapi.document(MAX_BODY)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert {"400", "414", "431"} <= set(operation["responses"]), (method, path)
