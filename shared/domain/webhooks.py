"""Parse and validate AlertManager webhook bodies (version 4) with marshmallow.

Errors carry the path of the offending field (``alerts.0.startsAt``) so that the
sender's operator can find it. A missing fingerprint is computed the way AlertManager
computes it, so that alerts from other senders deduplicate the same way.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from shared.domain.alerts import IncomingAlert, Notification
from shared.domain.fingerprints import label_set_fingerprint
from shared.errors import ValidationError

# RFC 3339 with 0 to 9 fractional digits (Go prints nanoseconds; Python keeps micro).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}\Z")


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


class _Timestamp(ma.fields.Field[dt.datetime]):
    default_error_messages = {"invalid": "Not a valid RFC 3339 timestamp."}  # noqa: RUF012

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return parse_rfc3339(value)
        except (ValueError, OverflowError) as exc:  # year 1 at +02:00 is before UTC's year 1
            raise self.make_error("invalid") from exc


class _StringMap(ma.fields.Field[dict[str, str]]):
    """A JSON object of strings to strings, checked in one pass.

    ``fields.Dict(keys=String(), values=String())`` runs a field per key and value,
    which made up most of the parse time of a 50-alert webhook.
    """

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


class _AlertSchema(ma.Schema):
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


class _NotificationSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    version = ma.fields.String(
        required=True, validate=ma.validate.Equal("4", error="Only webhook version 4 is supported.")
    )
    groupKey = ma.fields.String(load_default="")
    truncatedAlerts = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0))
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(["firing", "resolved"]))
    receiver = ma.fields.String(load_default="")
    groupLabels = _StringMap(load_default=dict)
    commonLabels = _StringMap(load_default=dict)
    commonAnnotations = _StringMap(load_default=dict)
    externalURL = ma.fields.String(load_default="")
    alerts = ma.fields.List(ma.fields.Nested(_AlertSchema), required=True)


_SCHEMA = _NotificationSchema()
# Go's zero time: AlertManager's endsAt for a firing alert.
_ZERO_TIME_YEAR = 1


def _flatten(messages: Mapping[Any, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            flat[path] = " ".join(value)
        else:
            flat[path] = str(value)
    return flat


def parse_notification(body: Any) -> Notification:
    """Validate a decoded JSON body; raise ValidationError naming each bad field."""
    if not isinstance(body, Mapping):
        raise ValidationError("body must be a JSON object", {"_schema": "must be an object"})
    try:
        data = _SCHEMA.load(body)
    except ma.ValidationError as exc:
        fields: dict[str, object] = dict(_flatten(exc.normalized_messages()))  # type: ignore[no-untyped-call]
        detail = "; ".join(f"{path}: {problem}" for path, problem in sorted(fields.items()))
        raise ValidationError(f"invalid AlertManager webhook: {detail}", fields) from exc
    alerts = tuple(
        IncomingAlert(
            status=alert["status"],
            labels=alert["labels"],
            annotations=alert["annotations"],
            starts_at=alert["startsAt"],
            ends_at=_none_if_zero(alert["endsAt"]),
            generator_url=alert["generatorURL"],
            fingerprint=alert["fingerprint"] or label_set_fingerprint(alert["labels"]),
        )
        for alert in data["alerts"]
    )
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
        alerts=alerts,
    )


def _none_if_zero(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.year <= _ZERO_TIME_YEAR:
        return None
    return value
