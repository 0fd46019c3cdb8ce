"""HTTP views of the ingest API: the webhook endpoint, the read API and health.

Views translate HTTP to calls on ``services.ingest.intake`` and the store and back.
Bad input gets a 4xx that names the problem and writes nothing; business outcomes
(everything filtered, duplicates, some alerts of a group refused) are 2xx, because
AlertManager retries a 5xx, and retrying what fails the same way every time would
hold the whole group back forever. 503 is kept for real unavailability (database
connection lost, timeouts, a secret that cannot be read).

The read API (``/api/v1``) shows alerts, annotations and every step's output on the
listener AlertManager reaches, so it takes its own bearer token (PF_API_TOKEN_FILE)
and is off without one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import logging
import re
import uuid
from typing import Any, cast

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from services.ingest import intake, state
from shared import logs
from shared import runs as shared_runs
from shared.db import engines
from shared.db.models import Alert, AlertSourceEvent, SourceEvent
from shared.domain.alerts import AlertStatus, Notification, RefusedAlert
from shared.domain.webhooks import (
    MAX_REFUSAL_DETAILS,
    AllAlertsRefusedError,
    MalformedBodyError,
    load_json,
    parse_notification,
)
from shared.errors import SecretError, ValidationError

log = logging.getLogger(__name__)
blueprint = Blueprint("ingest", __name__)

_ALERTS = cast(sa.Table, Alert.__table__)
_EVENTS = cast(sa.Table, SourceEvent.__table__)
_LINKS = cast(sa.Table, AlertSourceEvent.__table__)
_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}\Z")
# A Kubernetes object name (DNS subdomain), as the Source schema requires; this also
# keeps a NUL, which PostgreSQL refuses in any query, out of the query.
_SOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
MAX_PAGE = 500
DEFAULT_PAGE = 50


def _error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response, status


@blueprint.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    if isinstance(exc, MethodNotAllowed) and not _path_exists(exc):
        status = 404
    messages = {
        404: "no such endpoint; webhooks are accepted on the paths of configured Sources",
        405: f"method {request.method} not allowed here",
        413: "request body is larger than the limit (PF_INGEST_MAX_BODY_BYTES)",
    }
    response, status = _error(status, messages.get(status, exc.description or exc.name))
    if status == 405 and isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response, status


def _path_exists(exc: MethodNotAllowed) -> bool:
    """Whether anything answers the request's path, with another method.

    The webhook route takes POST on every path, so Flask answers 405 to a GET on any
    path at all; a path is only there when another route has it or a Source listens
    on it (``GET /api/v1/sources`` is a 404, ``GET /webhook/<a Source>`` a 405).
    """
    if set(exc.valid_methods or ()) - {"POST", "OPTIONS"}:
        return True
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return False
    rule, _ = adapter.match(method="POST", return_rule=True)
    if rule.endpoint != f"{blueprint.name}.{receive_webhook.__name__}":
        return True
    try:
        return state.current().catalog.by_path(request.path) is not None
    except HTTPException:  # claimed by two Sources, or unusable: the path is there
        return True


@blueprint.app_errorhandler(sa.exc.SQLAlchemyError)
def _database_error(exc: sa.exc.SQLAlchemyError) -> tuple[Response, int]:
    # Nothing was committed (the transaction rolled back).
    cause = getattr(exc, "orig", None) or exc
    if engines.unreachable(exc):
        # A 5xx makes AlertManager send the notification again: nothing is lost.
        log.error("database unavailable", extra={"error": str(cause), "path": request.path})
        return _error(503, "database unavailable; retry later")
    # The same request would fail the same way on every retry: say so, do not loop.
    log.error(
        "database refused the request's data",
        extra={"error": str(cause), "kind": type(cause).__name__, "path": request.path},
    )
    return _error(
        422, f"the database refused this request's data ({type(cause).__name__}); nothing stored"
    )


@blueprint.before_app_request
def _read_api_token() -> tuple[Response, int] | None:
    if not request.path.startswith("/api/"):
        return None  # webhooks authenticate per Source; health and metrics stay open
    expected = state.current().api_token
    if expected is None:
        return _error(403, "the read API is disabled: start ingest with PF_API_TOKEN_FILE set")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        log.warning("read API request refused: bad or missing bearer token")
        response, status = _error(401, "missing or wrong bearer token for the read API")
        response.headers["WWW-Authenticate"] = 'Bearer realm="punchingfist"'
        return response, status
    return None


@blueprint.post("/<path:path>")
def receive_webhook(path: str) -> tuple[Response, int]:
    # Every line logged for this request names its Source (and, once stored, its
    # event); the alerts and runs are on the "webhook recorded" line.
    with logs.bound():
        return _receive_webhook(path)


def _receive_webhook(path: str) -> tuple[Response, int]:
    ingest = state.current()
    source = ingest.catalog.by_path("/" + path)
    if source is None:
        return _error(404, f"no Source listens on /{path}")
    logs.bind(source=source.name)
    if source.bearer_secret is not None:
        try:
            expected = ingest.secrets.get(
                source.namespace, source.bearer_secret.name, source.bearer_secret.key
            )
        except SecretError as exc:
            log.error("webhook token unavailable", extra={"source": source.name, "error": str(exc)})
            # 503: the sender should retry; the operator must fix the secret.
            return _error(503, f"Source {source.name}: its bearer token cannot be read")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            log.warning(
                "webhook rejected: bad or missing bearer token", extra={"source": source.name}
            )
            return _error(401, "missing or wrong bearer token")
    if request.mimetype != "application/json":
        return _error(
            415, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )
    parsed = _parse_body(source.name)
    if isinstance(parsed, Response):
        return parsed, parsed.status_code
    body, notification = parsed
    # While the broker is known to be down nobody publishes from the request, so the
    # relay may take the entries at once instead of waiting out a lease.
    publishing = ingest.publisher.available
    try:
        result = intake.record(
            ingest.units,
            source,
            notification,
            body,
            lease_seconds=ingest.settings.outbox.lease_seconds if publishing else 0.0,
        )
    except (ValueError, UnicodeError) as exc:
        # A driver refusing a value before the database sees it (psycopg2: NUL in a
        # string) is not wrapped by SQLAlchemy. Validation should have caught it.
        log.exception("webhook could not be stored", extra={"source": source.name})
        return _error(422, f"this webhook's data cannot be stored: {exc}; nothing stored")
    _count(source.name, notification, result)
    logs.bind(event_id=str(result.event_id))
    log.info(
        "webhook recorded",
        extra={
            "alert_ids": [str(alert_id) for alert_id in result.alert_ids],
            # alert id -> the run started for it: the link from ingest's lines to
            # the engine's and notifier's, which carry both.
            "runs": {
                str(alert_id): str(run_id)
                for alert_id, run_id in zip(result.run_alert_ids, result.run_ids, strict=True)
            },
            "received": result.received,
            "filtered": result.filtered,
            "new": result.new,
            "deduplicated": result.deduplicated,
            "resolved": result.resolved,
            "workflows_started": result.workflows_started,
            "rate_limited": result.rate_limited,
            "refused": result.refused,
            "published": result.published,
        },
    )
    answer = result.as_json()
    # The first MAX_REFUSAL_DETAILS, as stored on the source event; "refused" is exact.
    answer["refusals"] = [r.as_json() for r in notification.refused[:MAX_REFUSAL_DETAILS]]
    answer["truncated"] = notification.truncated_alerts
    return jsonify(answer), 200


def _parse_body(source: str) -> tuple[Any, Notification] | Response:
    """The body and its notification, or the 4xx answer that refuses the request."""
    try:
        body = load_json(_read_body())
    except MalformedBodyError as exc:
        return _error(400, str(exc))[0]
    try:
        return body, parse_notification(body)
    except AllAlertsRefusedError as exc:
        _count_refused(source, exc.refused)
        _log_refused(source, exc.refused)
        return _error(422, str(exc), fields=exc.messages, refused=len(exc.refused))[0]
    except ValidationError as exc:
        return _error(422, str(exc), fields=exc.messages)[0]


def _read_body() -> bytes:
    """The whole body; 413 when it is over the limit, chunked ones included.

    Werkzeug stops reading a body without Content-Length at MAX_CONTENT_LENGTH and
    returns what it read as if it were all: the cut body was then refused as
    malformed JSON (400), which tells the sender the wrong thing.
    """
    data = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    cut = request.content_length is None and limit is not None and len(data) >= limit
    # Past the limit Werkzeug's stream refuses to read; the server's own does not.
    if cut and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return data


def _count(source: str, notification: Notification, result: intake.IntakeResult) -> None:
    metrics = state.current().metrics
    _count_refused(source, notification.refused)
    if notification.refused:
        _log_refused(source, notification.refused, event_id=str(result.event_id))
    metrics.received.labels(source).inc(result.received)
    if result.filtered:
        metrics.filtered.labels(source).inc(result.filtered)
    if result.deduplicated:
        metrics.deduplicated.labels(source).inc(result.deduplicated)
    if result.workflows_started:
        metrics.started.labels(source).inc(result.workflows_started)
    if result.rate_limited:
        metrics.rate_limited.labels(source).inc(result.rate_limited)
    if notification.truncated_alerts:
        metrics.truncated.labels(source).inc(notification.truncated_alerts)
        log.warning(
            "webhook group truncated: AlertManager dropped alerts before sending (max_alerts)",
            extra={
                "source": source,
                "truncated": notification.truncated_alerts,
                "group_key": notification.group_key,
                "event_id": str(result.event_id),
            },
        )


def _count_refused(source: str, refused: tuple[RefusedAlert, ...]) -> None:
    counter = state.current().metrics.refused
    for refusal in refused:
        counter.labels(source, refusal.code).inc()


def _log_refused(source: str, refused: tuple[RefusedAlert, ...], **extra: str) -> None:
    log.warning(
        "webhook alerts refused",
        extra={
            "source": source,
            "refused": len(refused),
            "refusals": [refusal.as_json() for refusal in refused[:MAX_REFUSAL_DETAILS]],
            **extra,
        },
    )


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify({"status": "ok"}), 200


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    ingest = state.current()
    checks: dict[str, str] = {}
    served: int | None = None
    try:
        with ingest.read_sessions() as session:
            session.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
        # Ready means the Sources are read: a webhook after this finds its Source.
        served = ingest.catalog.refresh()
        checks["sources"] = "ok"
    except sa.exc.SQLAlchemyError as exc:
        checks.setdefault("database", f"unavailable: {exc.__class__.__name__}")
        checks.setdefault("sources", "not read: database unavailable")
    try:
        with ingest.celery.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0,
                timeout=ingest.settings.broker.publish_timeout,
            )
        checks["broker"] = "ok"
    except Exception as exc:  # kombu raises many types for one cause: broker unreachable
        checks["broker"] = f"unavailable: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    if served is not None:
        body["webhookPaths"] = served
    return jsonify(body), 200 if ready else 503


def _alert_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "fingerprint": row.fingerprint,
        "status": row.status,
        "alertName": row.alert_name,
        "severity": row.severity,
        "summary": row.summary,
        "description": row.description,
        "labels": row.labels,
        "annotations": row.annotations,
        "source": row.source_name,
        "workflow": row.workflow_name,
        "generatorURL": row.generator_url,
        "autoResolved": row.auto_resolved,
        "aiAnalysis": row.ai_analysis,
        "aiConfidence": row.ai_confidence,
        "timesSeen": row.times_seen,
        "startsAt": shared_runs.iso(row.starts_at),
        "endsAt": shared_runs.iso(row.ends_at),
        "receivedAt": shared_runs.iso(row.received_at),
        "lastSeenAt": shared_runs.iso(row.last_seen_at),
        "triageStartedAt": shared_runs.iso(row.triage_started_at),
        "triageCompletedAt": shared_runs.iso(row.triage_completed_at),
        "resolvedAt": shared_runs.iso(row.resolved_at),
    }


def _encode_cursor(received_at: dt.datetime, alert_id: uuid.UUID) -> str:
    raw = f"{received_at.isoformat()}|{alert_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        stamp, _, alert_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        received_at, key = dt.datetime.fromisoformat(stamp), uuid.UUID(alert_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API returned") from exc
    if received_at.utcoffset() is None:
        # Ours always carry an offset; a naive one cannot be compared with the column.
        raise ValueError("cursor is not one this API returned (timestamp without offset)")
    try:
        # Ours are UTC; year 1 at +05:00 or year 9999 at -01:00 has no UTC time, and
        # failed when bound to the query (a 422 "the database refused").
        received_at = received_at.astimezone(dt.UTC)
    except OverflowError as exc:
        raise ValueError("cursor is not one this API returned (timestamp out of range)") from exc
    return received_at, key


_ALERT_FILTERS = frozenset({"status", "fingerprint", "source", "limit", "cursor"})


@blueprint.get("/api/v1/alerts")
def list_alerts() -> tuple[Response, int]:
    args = request.args
    # A misspelt filter (?state=firing) must not answer with every alert as if it applied.
    unknown = sorted(set(args) - _ALERT_FILTERS)
    if unknown:
        return _error(
            400,
            f"unknown query parameter {', '.join(map(repr, unknown))}; "
            f"this list takes {', '.join(sorted(_ALERT_FILTERS))}",
        )
    repeated = sorted(name for name in args if len(args.getlist(name)) > 1)
    if repeated:
        return _error(400, f"query parameter {', '.join(map(repr, repeated))} given more than once")
    query = sa.select(_ALERTS)
    status = args.get("status")
    if status is not None:
        if status not in {s.value for s in AlertStatus}:
            allowed = ", ".join(s.value for s in AlertStatus)
            return _error(400, f"status must be one of {allowed}")
        query = query.where(_ALERTS.c.status == status)
    fingerprint = args.get("fingerprint")
    if fingerprint is not None:
        if not _FINGERPRINT.match(fingerprint):
            return _error(400, "fingerprint must be lowercase hex digits")
        query = query.where(_ALERTS.c.fingerprint == fingerprint)
    source = args.get("source")
    if source is not None:
        if not _SOURCE_NAME.match(source):
            return _error(400, "source must be a Source name (lowercase letters, digits, '-.')")
        query = query.where(_ALERTS.c.source_name == source)
    try:
        limit = int(args.get("limit", DEFAULT_PAGE))
    except ValueError:
        return _error(400, "limit must be a whole number")
    if not 1 <= limit <= MAX_PAGE:
        return _error(400, f"limit must be between 1 and {MAX_PAGE}")
    cursor = args.get("cursor")
    if cursor:
        try:
            after_time, after_id = _decode_cursor(cursor)
        except ValueError as exc:
            return _error(400, str(exc))
        query = query.where(
            sa.or_(
                _ALERTS.c.received_at < after_time,
                sa.and_(_ALERTS.c.received_at == after_time, _ALERTS.c.id < after_id),
            )
        )
    query = query.order_by(_ALERTS.c.received_at.desc(), _ALERTS.c.id.desc()).limit(limit + 1)
    with state.current().read_sessions() as session:
        rows = session.execute(query).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode_cursor(page[-1].received_at, page[-1].id) if more else None
    return jsonify({"items": [_alert_json(row) for row in page], "next": next_cursor}), 200


@blueprint.get("/api/v1/alerts/<alert_id>")
def get_alert(alert_id: str) -> tuple[Response, int]:
    try:
        key = uuid.UUID(alert_id)
    except ValueError:
        return _error(400, "alert id must be a UUID")
    with state.current().read_sessions() as session:
        row = session.execute(sa.select(_ALERTS).where(_ALERTS.c.id == key)).first()
        if row is None:
            return _error(404, f"no alert {alert_id}")
        events = session.execute(
            sa.select(
                _EVENTS.c.id,
                _EVENTS.c.received_at,
                _EVENTS.c.source_name,
                _EVENTS.c.alerts_truncated,
                _LINKS.c.status,
            )
            .join(_LINKS, _LINKS.c.source_event_id == _EVENTS.c.id)
            .where(_LINKS.c.alert_id == key)
            .order_by(_EVENTS.c.received_at)
        ).all()
        runs = shared_runs.runs_for_alert(session, key)
    body = _alert_json(row)
    body["sourceEvents"] = [
        {
            "id": str(event.id),
            "receivedAt": shared_runs.iso(event.received_at),
            "source": event.source_name,
            "alertStatus": event.status,
            "alertsTruncated": event.alerts_truncated,
        }
        for event in events
    ]
    body["workflowRuns"] = runs
    return jsonify(body), 200


@blueprint.get("/api/v1/runs/<run_id>")
def get_run(run_id: str) -> tuple[Response, int]:
    try:
        key = uuid.UUID(run_id)
    except ValueError:
        return _error(400, "run id must be a UUID")
    with state.current().read_sessions() as session:
        run = shared_runs.run_detail(session, key)
    if run is None:
        return _error(404, f"no run {run_id}")
    return jsonify(run), 200
