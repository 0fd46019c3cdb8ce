"""The OpenAPI 3 document of the ingest API, served at ``GET /api/v1/openapi.json``.

Request bodies come from the schemas that load them (``shared.domain.webhooks`` for
the webhook, ``approvals.DecisionRequest``), answers from ``responses``, through
apispec's marshmallow plugin: there is no second, hand-written copy of a body.
What is written here is what marshmallow does not know: paths, parameters, status
codes and authentication. ``tests/unit/ingest/test_openapi_document.py`` checks that
every Flask route is documented and every documented path is a route, and the
schemathesis run of ``tests/e2e/test_bad_input.py`` checks the real server's answers
against the document.

The webhook route takes POST on every path (a Source's ``config.path`` may be any
path); the document names the default one, ``/webhook/{source}`` (``ROUTES`` maps
the Flask rule to it).

What this module must not do: serve or validate anything but the document.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, current_app, jsonify

from services.ingest import approvals, responses
from shared.domain import webhooks
from shared.domain.alerts import AlertStatus

blueprint = Blueprint("openapi", __name__)

DOCUMENT_PATH = "/api/v1/openapi.json"
WEBHOOK_PATH = "/webhook/{source}"
SLACK_PATH = "/slack/interactions"
# Flask rules documented under another path than their own spelling.
ROUTES = {"/<path:path>": WEBHOOK_PATH}
# Routes of Flask itself, not of the API.
UNDOCUMENTED_ENDPOINTS = frozenset({"static"})

_API_SECURITY: list[dict[str, list[str]]] = [{"apiToken": []}]
_UUID = {"type": "string", "format": "uuid"}


def documented_path(rule: str) -> str:
    """The document's path for a Flask rule (``<alert_id>`` -> ``{alert_id}``)."""
    if rule in ROUTES:
        return ROUTES[rule]
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(**statuses: str) -> dict[str, Any]:
    """Refusals (``{"error": ...}``) by status: ``_errors(s404="no such alert")``."""
    return {key[1:]: _json(responses.Error, why) for key, why in statuses.items()}


_READ_API_REFUSALS = _errors(
    s401="Missing or wrong bearer token (PF_API_TOKEN_FILE).",
    s403="The read API is off: ingest was started without PF_API_TOKEN_FILE.",
)
_DATABASE_DOWN = _errors(s503="The database cannot be reached; retry later.")


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {"in": "path", "name": name, "required": True, "schema": _UUID, "description": what}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "in": "query",
        "name": name,
        "required": False,
        "schema": schema,
        "description": description,
    }


def _paths(spec: APISpec, max_body_bytes: int) -> None:
    too_large = _errors(
        s413=f"The body is larger than {max_body_bytes} bytes (PF_INGEST_MAX_BODY_BYTES)."
    )
    _path(
        spec,
        WEBHOOK_PATH,
        {
            "post": {
                "operationId": "receiveWebhook",
                "summary": "Receive an AlertManager notification (webhook version 4).",
                "description": (
                    "Served on the path of each Source of type webhook: its config.path, by "
                    "default /webhook/<Source name>. Bad alerts of a group are refused alone "
                    "(200 with `refusals`); a 4xx stores nothing."
                ),
                "parameters": [
                    {
                        "in": "path",
                        "name": "source",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                        },
                        "example": "alertmanager",
                        "description": "The Source's name (when it sets no config.path).",
                    }
                ],
                "security": [{"webhookToken": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "Notification"}},
                },
                "responses": {
                    "200": _json(
                        responses.WebhookAccepted, "Recorded (all, or all but `refusals`)."
                    ),
                    **_errors(
                        s400="Not a JSON document: not UTF-8, malformed, NaN, nested too deep.",
                        s401="Missing or wrong bearer token for this Source.",
                        s404="No Source listens on this path.",
                        s409="More than one Source claims this path; none is served.",
                    ),
                    **too_large,
                    **_errors(
                        s415="Content-Type is not application/json.",
                        s422="Not an AlertManager notification, or not one alert can be stored "
                        "(`fields` names each problem).",
                        s503="The database, the Source or its token cannot be read; retry later.",
                    ),
                },
            }
        },
    )
    _path(
        spec,
        "/api/v1/alerts",
        {
            "get": {
                "operationId": "listAlerts",
                "summary": "Alerts, newest first, a page at a time.",
                "security": _API_SECURITY,
                "parameters": [
                    _query(
                        "status",
                        {"type": "string", "enum": [s.value for s in AlertStatus]},
                        "Only alerts in this status.",
                    ),
                    _query(
                        "fingerprint",
                        {"type": "string", "pattern": "^[0-9a-f]{1,64}$"},
                        "Only this fingerprint.",
                    ),
                    _query("source", {"type": "string"}, "Only alerts of this Source."),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                        "Page size.",
                    ),
                    _query("cursor", {"type": "string"}, "`next` of the previous page."),
                ],
                "responses": {
                    "200": _json(responses.AlertPage, "A page of alerts."),
                    **_errors(s400="A parameter is not valid (the message says which)."),
                    **_READ_API_REFUSALS,
                    **_DATABASE_DOWN,
                },
            }
        },
    )
    _path(
        spec,
        "/api/v1/alerts/{alert_id}",
        {
            "get": {
                "operationId": "getAlert",
                "summary": "One alert with its source events and workflow runs.",
                "security": _API_SECURITY,
                "parameters": [_path_id("alert_id", "The alert's id.")],
                "responses": {
                    "200": _json(responses.AlertDetail, "The alert."),
                    **_errors(s400="The id is not a UUID.", s404="No such alert."),
                    **_READ_API_REFUSALS,
                    **_DATABASE_DOWN,
                },
            }
        },
    )
    _path(
        spec,
        "/api/v1/runs/{run_id}",
        {
            "get": {
                "operationId": "getRun",
                "summary": "One workflow run with its steps and Sink deliveries.",
                "security": _API_SECURITY,
                "parameters": [_path_id("run_id", "The run's id.")],
                "responses": {
                    "200": _json(responses.RunDetail, "The run."),
                    **_errors(s400="The id is not a UUID.", s404="No such run."),
                    **_READ_API_REFUSALS,
                    **_DATABASE_DOWN,
                },
            }
        },
    )
    _path(
        spec,
        "/api/v1/approvals",
        {
            "get": {
                "operationId": "listApprovals",
                "summary": "Approvals waiting for a decision, oldest first (at most 500).",
                "security": _API_SECURITY,
                "responses": {
                    "200": _json(responses.ApprovalList, "Pending approvals."),
                    **_READ_API_REFUSALS,
                    **_DATABASE_DOWN,
                },
            }
        },
    )
    _path(
        spec,
        "/api/v1/approvals/{approval_id}",
        {
            "post": {
                "operationId": "decideApproval",
                "summary": "Approve or deny a pending approval; an approval resumes its run.",
                "security": _API_SECURITY,
                "parameters": [_path_id("approval_id", "The approval's id.")],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": approvals.DecisionRequest}},
                },
                "responses": {
                    "200": _json(responses.ApprovalView, "The approval as decided."),
                    **_errors(
                        s400="The id is not a UUID, or the body is not a valid decision.",
                        s404="No such approval.",
                        s409="Already decided, or expired.",
                    ),
                    **too_large,
                    **_errors(s415="Content-Type is not application/json."),
                    **_READ_API_REFUSALS,
                    **_DATABASE_DOWN,
                },
            }
        },
    )
    _path(
        spec,
        DOCUMENT_PATH,
        {
            "get": {
                "operationId": "getOpenAPIDocument",
                "summary": "This document.",
                "security": _API_SECURITY,
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3 document of this API.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_READ_API_REFUSALS,
                },
            }
        },
    )
    _path(
        spec,
        SLACK_PATH,
        {
            "post": {
                "operationId": "slackInteraction",
                "summary": "Approve / Deny button clicks, as Slack posts them (signed).",
                "parameters": [
                    {
                        "in": "header",
                        "name": "X-Slack-Signature",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "v0= and the HMAC-SHA256 of v0:<timestamp>:<body>.",
                    },
                    {
                        "in": "header",
                        "name": "X-Slack-Request-Timestamp",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "Unix seconds; a request older than 5 minutes is refused.",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "payload": {
                                        "type": "string",
                                        "description": "The interaction (block_actions) as JSON.",
                                    }
                                },
                                "required": ["payload"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        responses.SlackAnswer,
                        "What each click decided; a click that could not be (already decided, "
                        "unknown) says why with ok false.",
                    ),
                    **_errors(
                        s400="The payload is not an interaction (the message says why).",
                        s401="Missing, forged or stale signature.",
                        s403="Off: ingest was started without PF_SLACK_SIGNING_SECRET_FILE.",
                    ),
                    **too_large,
                    **_DATABASE_DOWN,
                },
            }
        },
    )
    _path(
        spec,
        "/healthz",
        {
            "get": {
                "operationId": "health",
                "summary": "The process answers (liveness).",
                "responses": {"200": _json(responses.Health, "Alive.")},
            }
        },
    )
    _path(
        spec,
        "/readyz",
        {
            "get": {
                "operationId": "readiness",
                "summary": "Database, Sources and broker reachable (readiness).",
                "responses": {
                    "200": _json(responses.Readiness, "Ready: each check is ok."),
                    "503": _json(responses.Readiness, "Not ready: the failing checks say why."),
                },
            }
        },
    )
    _path(
        spec,
        "/metrics",
        {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (summed over the gunicorn workers).",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    )


# What gunicorn refuses before any route runs, so on every operation (services/
# ingest/workers.py answers these in JSON too).
_GUNICORN_REFUSALS = {
    "400": "The request is not HTTP that gunicorn accepts (request line, framing).",
    "414": "The request line is longer than 4094 bytes.",
    "431": "A header is longer than 8190 bytes, or there are more than 100.",
}


def _path(spec: APISpec, path: str, operations: dict[str, dict[str, Any]]) -> None:
    for operation in operations.values():
        for status, why in _GUNICORN_REFUSALS.items():
            operation["responses"].setdefault(status, _json(responses.Error, why))
    spec.path(path=path, operations=operations)


def _json_schema(document: Any) -> Any:
    r"""The document with what marshmallow's spelling gets wrong in JSON Schema put right.

    - Python's end anchor ``\Z`` is written ``$``: the webhook schema's regexes end in
      ``\Z`` (``$`` lets a trailing newline through in Python), JSON Schema patterns
      are ECMA 262, where ``$`` is the end.
    - A Length validator on a Dict counts keys: ``minProperties``, not ``minLength``.
    """
    if isinstance(document, list):
        return [_json_schema(value) for value in document]
    if not isinstance(document, dict):
        return document
    fixed = {key: _json_schema(value) for key, value in document.items()}
    if isinstance(fixed.get("pattern"), str):
        fixed["pattern"] = fixed["pattern"].replace("\\Z", "$")
    if fixed.get("type") == "object":
        for bound in ("min", "max"):
            if f"{bound}Length" in fixed:
                fixed[f"{bound}Properties"] = fixed.pop(f"{bound}Length")
    return fixed


@functools.cache
def document(max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document of an ingest API that takes bodies up to ``max_body_bytes``."""
    spec = APISpec(
        title="Punching Fist ingest API",
        version=importlib.metadata.version("punching-fist"),
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": (
                "AlertManager webhooks in; alerts, runs and approvals out. Every refusal is "
                "a 4xx with a JSON body whose `error` names the problem, and stores nothing."
            )
        },
    )
    spec.components.security_scheme(
        "apiToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "The read API's token (PF_API_TOKEN_FILE).",
        },
    )
    spec.components.security_scheme(
        "webhookToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "The Source's token (config.authentication.secretRef); "
            "none for a Source with authentication type none.",
        },
    )
    spec.components.schema("Alert", schema=webhooks.AlertSchema)
    spec.components.schema("Notification", schema=webhooks.NotificationSchema)
    _paths(spec, max_body_bytes)
    result: dict[str, Any] = _json_schema(spec.to_dict())
    # Each alert is loaded on its own so that a bad one is refused alone: the envelope's
    # schema takes anything in `alerts`, the document says what a good alert is.
    notification = result["components"]["schemas"]["Notification"]
    notification["properties"]["alerts"]["items"] = {"$ref": "#/components/schemas/Alert"}
    return result


@blueprint.get(DOCUMENT_PATH)
def openapi_document() -> tuple[Response, int]:
    return jsonify(document(current_app.config["MAX_CONTENT_LENGTH"])), 200
