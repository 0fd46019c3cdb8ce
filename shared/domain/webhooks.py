"""Parse and validate AlertManager webhook bodies (version 4) with marshmallow.

Errors carry the path of the offending field (``alerts.0.startsAt``) so that the
sender's operator can find it. A missing fingerprint is computed the way AlertManager
computes it, so that alerts from other senders deduplicate the same way.

Everything the database would refuse is refused here first, because a refusal by the
database looks like an outage (AlertManager retries it forever, and the whole group
with it). Three levels:

- the body (``load_json``): not UTF-8, not JSON, ``NaN``/``Infinity``/numbers that
  overflow a double, nesting deeper than ``MAX_DEPTH`` -> MalformedBodyError (400);
- the envelope (version, status, ``alerts`` a list, ...) -> ValidationError (422);
- each alert: schema errors, NUL characters, lone surrogates, values longer than
  their column -> a RefusedAlert; the other alerts of the group are still recorded.
  Only when no alert at all can be recorded is the request a ValidationError.

``storable`` makes the whole body safe to keep as the source event's record.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from shared.domain import texts
from shared.domain.alerts import IncomingAlert, Notification, RefusedAlert
from shared.domain.fingerprints import label_set_fingerprint
from shared.errors import ValidationError

# RFC 3339 with 0 to 9 fractional digits (Go prints nanoseconds; Python keeps micro).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}\Z")
# What PostgreSQL cannot hold in text or JSONB: NUL, and UTF-16 surrogates that are
# not part of a pair (json.loads joins valid pairs, so any surrogate left is lone).
_NUL = texts.NUL
_SURROGATE = texts.SURROGATE
_UNSTORABLE = texts.UNSTORABLE

# Nesting allowed in a body. AlertManager's is 4 deep (body, alerts, alert, labels);
# the limit only keeps recursion in the parser, marshmallow and the JSON encoders
# far from Python's stack limit.
MAX_DEPTH = 32
# Column sizes of the label copies in ``alerts`` (shared.db.models.Alert); a test
# checks that they agree.
MAX_SEVERITY = 32
MAX_ALERT_NAME = 255
# truncatedAlerts is kept in an INTEGER column (source_events.alerts_truncated): a
# larger number was a 500 on SQLite (the driver's OverflowError) and a refusal by
# PostgreSQL. No AlertManager drops two billion alerts from one group.
MAX_TRUNCATED_ALERTS = 2**31 - 1
# Refusal details kept per request; the count is always exact.
MAX_REFUSAL_DETAILS = 100
# Longest field path quoted back (a label name can be megabytes long).
_MAX_PATH = 200


class MalformedBodyError(ValidationError):
    """The body is not a JSON document this API accepts (answered with 400)."""


class AllAlertsRefusedError(ValidationError):
    """Not one alert of the notification can be recorded; ``refused`` says why."""

    def __init__(
        self, message: str, messages: dict[str, object], refused: tuple[RefusedAlert, ...]
    ) -> None:
        super().__init__(message, messages)
        self.refused = refused


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259); send a string or leave it out")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]!r} is too large for a double")
    return value


def _depth(document: Any) -> int:
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def load_json(raw: bytes) -> Any:
    """Decode a request body; raise MalformedBodyError with the reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body is not UTF-8 text (RFC 8259): {exc}") from exc
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise MalformedBodyError(f"body is not valid JSON: nested deeper than {MAX_DEPTH}") from exc
    except ValueError as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
    if _depth(document) > MAX_DEPTH:
        raise MalformedBodyError(f"body is not valid JSON: nested deeper than {MAX_DEPTH}")
    return document


def _escape(text: str) -> str:
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def storable(document: Any) -> Any:
    """``document`` with NUL and lone surrogates written as their JSON escape text.

    PostgreSQL's JSONB refuses both; keeping them as the six characters ``\\u0000``
    leaves the record readable as what was sent. (Ambiguous only with a body that
    sent a literal backslash-u sequence, which no AlertManager sends.)
    """
    if isinstance(document, str):
        return _escape(document) if _UNSTORABLE.search(document) else document
    if isinstance(document, dict):
        return {storable(key): storable(value) for key, value in document.items()}
    if isinstance(document, list):
        return [storable(value) for value in document]
    return document


def _printable_path(path: str) -> str:
    path = _escape(path)
    return path if len(path) <= _MAX_PATH else path[: _MAX_PATH - 1] + "…"


def parse_rfc3339(text: str) -> dt.datetime:
    found = _RFC3339.match(text)
    if found is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(found[i]) for i in range(1, 7))
    micro = int((found[7] or "0")[:6].ljust(6, "0"))
    tz = dt.UTC
    if found[9]:
        offset = dt.timedelta(hours=int(found[10]), minutes=int(found[11]))
        tz = dt.timezone(offset if found[9] == "+" else -offset)
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(dt.UTC)


class _Timestamp(ma.fields.DateTime):
    """RFC 3339 with Go's nanoseconds; a DateTime so that the OpenAPI document says
    ``format: date-time`` (``services.ingest.openapi``)."""

    default_error_messages = {"invalid": "Not a valid RFC 3339 timestamp."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_rfc3339(value)
        except (ValueError, OverflowError) as exc:  # year 1 at +02:00 is before UTC's year 1
            raise self.make_error("invalid") from exc


class _StringMap(ma.fields.Dict):
    """A JSON object of strings to strings, checked in one pass.

    ``fields.Dict(keys=String(), values=String())`` runs a field per key and value,
    which made up most of the parse time of a 50-alert webhook. It is still a Dict of
    Strings, so that the OpenAPI document describes it (its loading is our own).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=ma.fields.String(), values=ma.fields.String(), **kwargs)

    default_error_messages = {"invalid": "Not a valid mapping type."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        bad = {
            key: {"value": ["Field may not be null." if item is None else "Not a valid string."]}
            for key, item in value.items()
            if not isinstance(item, str)
        }
        if bad:
            raise ma.ValidationError(bad)
        return value


class AlertSchema(ma.Schema):
    """One alert of a notification (also the OpenAPI document's ``Alert``)."""

    class Meta:
        unknown = ma.EXCLUDE

    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["firing", "resolved"]))
    labels = _StringMap(
        required=True,
        validate=ma.validate.Length(min=1, error="An alert needs at least one label."),
    )
    annotations = _StringMap(load_default=dict)
    startsAt = _Timestamp(required=True)
    endsAt = _Timestamp(load_default=None, allow_none=True)
    generatorURL = ma.fields.String(load_default=None, allow_none=True)
    fingerprint = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Regexp(_FINGERPRINT, error="Must be lowercase hex digits."),
    )


class NotificationSchema(ma.Schema):
    """The webhook body (also the OpenAPI document's request body)."""

    class Meta:
        unknown = ma.EXCLUDE

    version = ma.fields.String(
        required=True, validate=ma.validate.Equal("4", error="Only webhook version 4 is supported.")
    )
    groupKey = ma.fields.String(load_default="")
    truncatedAlerts = ma.fields.Integer(
        load_default=0, validate=ma.validate.Range(min=0, max=MAX_TRUNCATED_ALERTS)
    )
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["firing", "resolved"]))
    receiver = ma.fields.String(load_default="")
    groupLabels = _StringMap(load_default=dict)
    commonLabels = _StringMap(load_default=dict)
    commonAnnotations = _StringMap(load_default=dict)
    externalURL = ma.fields.String(load_default="")
    # Each alert is loaded on its own (_ALERT), so that one bad alert is refused alone.
    alerts = ma.fields.List(ma.fields.Raw(allow_none=True), required=True)


_SCHEMA = NotificationSchema()
_ALERT = AlertSchema()
# Go's zero time: AlertManager's endsAt for a firing alert.
_ZERO_TIME_YEAR = 1


def _flatten(messages: Mapping[Any, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            flat[_printable_path(path)] = " ".join(value)
        else:
            flat[_printable_path(path)] = str(value)
    return flat


def _text_problems(path: str, values: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(field, code, reason) for names and values PostgreSQL could not store."""
    problems = []
    for name, value in values.items():
        for text, where, what in ((name, path, "a name"), (value, f"{path}.{name}", "the value")):
            if _NUL in text:
                problems.append((where, "nul", f"{what} contains a NUL character"))
            elif _SURROGATE.search(text):
                reason = f"{what} contains a lone UTF-16 surrogate (not Unicode)"
                problems.append((where, "surrogate", reason))
    return problems


def _alert_problems(prefix: str, alert: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    problems = _text_problems(f"{prefix}.labels", alert["labels"])
    problems += _text_problems(f"{prefix}.annotations", alert["annotations"])
    url = alert["generatorURL"]
    if url is not None:
        problems += _text_problems(prefix, {"generatorURL": url})
    labels = alert["labels"]
    for name, limit in (("severity", MAX_SEVERITY), ("alertname", MAX_ALERT_NAME)):
        value = labels.get(name, "")
        if len(value) > limit:
            problems.append(
                (
                    f"{prefix}.labels.{name}",
                    "too_long",
                    f"is {len(value)} characters long; at most {limit} are stored",
                )
            )
    return [(_printable_path(field), code, reason) for field, code, reason in problems]


def _load_alert(
    index: int, raw: Any
) -> IncomingAlert | tuple[RefusedAlert, dict[str, str], Exception | None]:
    prefix = f"alerts.{index}"
    if raw is None:
        fields = {prefix: "Field may not be null."}
        return _refusal(index, "invalid", fields), fields, None
    try:
        alert = _ALERT.load(raw)
    except ma.ValidationError as exc:
        fields = _flatten(exc.normalized_messages(), prefix)  # type: ignore[no-untyped-call]
        return _refusal(index, "invalid", fields), fields, exc
    problems = _alert_problems(prefix, alert)
    if problems:
        fields = {field: reason for field, _code, reason in problems}
        return _refusal(index, problems[0][1], fields), fields, None
    return IncomingAlert(
        status=alert["status"],
        labels=alert["labels"],
        annotations=alert["annotations"],
        starts_at=alert["startsAt"],
        ends_at=_none_if_zero(alert["endsAt"]),
        generator_url=alert["generatorURL"],
        fingerprint=alert["fingerprint"] or label_set_fingerprint(alert["labels"]),
    )


def _refusal(index: int, code: str, fields: Mapping[str, str]) -> RefusedAlert:
    first = min(fields)
    reason = "; ".join(f"{path}: {problem}" for path, problem in sorted(fields.items()))
    return RefusedAlert(index=index, field=first, code=code, reason=reason)


def parse_notification(body: Any) -> Notification:
    """Validate a decoded JSON body.

    Raises ValidationError (naming each bad field) when the envelope is bad or when
    not one of its alerts can be recorded; otherwise returns the alerts that can be,
    and the refused ones in ``Notification.refused``.
    """
    if not isinstance(body, Mapping):
        raise ValidationError("body must be a JSON object", {"_schema": "must be an object"})
    envelope_errors: dict[str, str] = {}
    cause: Exception | None = None
    try:
        data = _SCHEMA.load(body)
    except ma.ValidationError as exc:
        cause = exc
        messages = exc.normalized_messages()  # type: ignore[no-untyped-call]
        # The alerts' own errors come from _load_alert; only the list itself counts here.
        envelope_errors = _flatten(
            {key: value for key, value in messages.items() if key != "alerts"}
        )
        if "alerts" in messages:
            envelope_errors["alerts"] = " ".join(_flatten({"": messages["alerts"]}).values())
        data = {}
    raw_alerts = body.get("alerts")
    alerts: list[IncomingAlert] = []
    refused: list[RefusedAlert] = []
    alert_errors: dict[str, str] = {}
    for index, raw in enumerate(raw_alerts if isinstance(raw_alerts, list) else ()):
        loaded = _load_alert(index, raw)
        if isinstance(loaded, IncomingAlert):
            alerts.append(loaded)
            continue
        refusal, fields, alert_cause = loaded
        refused.append(refusal)
        alert_errors.update(fields)
        cause = cause or alert_cause
    if envelope_errors or (refused and not alerts):
        problems: dict[str, object] = {**envelope_errors, **alert_errors}
        detail = "; ".join(f"{path}: {problem}" for path, problem in sorted(problems.items()))
        message = f"invalid AlertManager webhook: {detail}"
        if envelope_errors:
            raise ValidationError(message, problems) from cause
        raise AllAlertsRefusedError(message, problems, tuple(refused)) from cause
    return Notification(
        version=data["version"],
        group_key=data["groupKey"],
        truncated_alerts=data["truncatedAlerts"],
        status=data["status"],
        receiver=data["receiver"],
        group_labels=data["groupLabels"],
        common_labels=data["commonLabels"],
        common_annotations=data["commonAnnotations"],
        external_url=data["externalURL"],
        alerts=tuple(alerts),
        refused=tuple(refused),
    )


def _none_if_zero(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.year <= _ZERO_TIME_YEAR:
        return None
    return value
