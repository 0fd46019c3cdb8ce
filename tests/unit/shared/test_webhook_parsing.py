"""Parsing AlertManager webhook bodies (version 4), from real captures and broken ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from shared.domain import webhooks
from shared.domain.fingerprints import label_set_fingerprint
from shared.errors import ValidationError

Payload = Callable[[str], dict[str, Any]]
CAPTURES = [
    "01-firing-single.json",
    "02-resolved-single.json",
    "03-firing-group-of-2.json",
    "05-group-mixed-1-resolved-2-firing.json",
]


def _utc(*fields: int) -> dt.datetime:
    year, month, day, hour, minute, second, micro = (*fields, 0, 0, 0, 0)[:7]
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)


def _minimal(**alert: Any) -> dict[str, Any]:
    body_alert = {
        "status": "firing",
        "labels": {"alertname": "X"},
        "startsAt": "2026-11-26T04:02:39Z",
    }
    body_alert.update(alert)
    return {"version": "4", "status": "firing", "alerts": [body_alert]}


def _errors(body: Any) -> dict[str, object]:
    with pytest.raises(ValidationError) as caught:
        webhooks.parse_notification(body)
    for path, problem in caught.value.messages.items():
        if path != "_schema":
            assert f"{path}: {problem}" in str(caught.value)
    return caught.value.messages


class TestCapturedPayloads:
    @pytest.mark.parametrize("name", CAPTURES)
    def test_keeps_alertmanager_fingerprints(
        self, alertmanager_payload: Payload, name: str
    ) -> None:
        body = alertmanager_payload(name)
        parsed = webhooks.parse_notification(body)
        assert [a.fingerprint for a in parsed.alerts] == [a["fingerprint"] for a in body["alerts"]]

    @pytest.mark.parametrize("name", CAPTURES)
    def test_computes_the_same_fingerprint_when_missing(
        self, alertmanager_payload: Payload, name: str
    ) -> None:
        body = alertmanager_payload(name)
        expected = [alert.pop("fingerprint") for alert in body["alerts"]]
        parsed = webhooks.parse_notification(body)
        assert [a.fingerprint for a in parsed.alerts] == expected

    @pytest.mark.parametrize("name", CAPTURES)
    def test_computes_fingerprint_when_null(self, alertmanager_payload: Payload, name: str) -> None:
        body = alertmanager_payload(name)
        expected = []
        for alert in body["alerts"]:
            expected.append(alert["fingerprint"])
            alert["fingerprint"] = None
        parsed = webhooks.parse_notification(body)
        assert [a.fingerprint for a in parsed.alerts] == expected

    def test_firing_single(self, alertmanager_payload: Payload) -> None:
        parsed = webhooks.parse_notification(alertmanager_payload("01-firing-single.json"))
        assert parsed.version == "4"
        assert parsed.status == "firing"
        assert parsed.receiver == "incident-webhook"
        assert parsed.group_key == '{}:{alertname="KubePodCrashLooping", namespace="prod"}'
        assert parsed.truncated_alerts == 0
        assert parsed.external_url == "http://vm:19093"
        assert parsed.group_labels == {"alertname": "KubePodCrashLooping", "namespace": "prod"}
        assert parsed.common_labels["pod"] == "api-7d9f-abc"
        assert parsed.common_annotations["summary"] == "KubePodCrashLooping on api-7d9f-abc"
        (alert,) = parsed.alerts
        assert alert.status == "firing"
        assert not alert.is_resolved
        assert alert.alert_name == "KubePodCrashLooping"
        assert alert.severity == "critical"
        assert alert.annotations["runbook_url"] == "https://runbooks.example/KubePodCrashLooping"
        assert alert.starts_at == _utc(2026, 11, 26, 4, 2, 39, 580783)
        assert alert.ends_at is None  # Go's zero time
        assert alert.generator_url == "http://127.0.0.1:19090/graph?g0.expr=up"

    def test_resolved_single(self, alertmanager_payload: Payload) -> None:
        parsed = webhooks.parse_notification(alertmanager_payload("02-resolved-single.json"))
        (alert,) = parsed.alerts
        assert parsed.status == "resolved"
        assert alert.is_resolved
        assert alert.ends_at == _utc(2026, 11, 26, 4, 3, 14, 609867)

    def test_group_keeps_alert_order(self, alertmanager_payload: Payload) -> None:
        parsed = webhooks.parse_notification(alertmanager_payload("03-firing-group-of-2.json"))
        assert [a.labels["pod"] for a in parsed.alerts] == ["web-1", "web-2"]
        # Nanoseconds from Go are truncated to Python's microseconds.
        assert {a.starts_at for a in parsed.alerts} == {_utc(2026, 11, 26, 4, 3, 17, 598702)}

    def test_mixed_group_keeps_each_alert_status(self, alertmanager_payload: Payload) -> None:
        parsed = webhooks.parse_notification(
            alertmanager_payload("05-group-mixed-1-resolved-2-firing.json")
        )
        assert parsed.status == "firing"
        assert [(a.status, a.is_resolved) for a in parsed.alerts] == [
            ("resolved", True),
            ("firing", False),
            ("firing", False),
        ]
        assert parsed.alerts[0].ends_at == _utc(2026, 11, 26, 4, 3, 29, 941649)
        assert [a.ends_at for a in parsed.alerts[1:]] == [None, None]
        assert parsed.alerts[2].starts_at == _utc(2026, 11, 26, 4, 3, 19, 115024)

    def test_ignores_unknown_fields(self, alertmanager_payload: Payload) -> None:
        body = alertmanager_payload("01-firing-single.json")
        body["futureField"] = {"x": 1}
        body["alerts"][0]["silencedBy"] = []
        parsed = webhooks.parse_notification(body)
        assert parsed.alerts[0].fingerprint == "7c8f1b9300292754"


class TestDefaults:
    def test_optional_fields_default(self) -> None:
        parsed = webhooks.parse_notification(_minimal())
        assert (parsed.group_key, parsed.receiver, parsed.external_url) == ("", "", "")
        assert parsed.truncated_alerts == 0
        assert parsed.group_labels == parsed.common_labels == parsed.common_annotations == {}
        (alert,) = parsed.alerts
        assert alert.annotations == {}
        assert alert.ends_at is None
        assert alert.generator_url is None
        assert alert.fingerprint == label_set_fingerprint({"alertname": "X"})

    def test_empty_alert_list_is_accepted(self) -> None:
        body = _minimal()
        body["alerts"] = []
        assert webhooks.parse_notification(body).alerts == ()

    def test_explicit_null_end_and_generator(self) -> None:
        (alert,) = webhooks.parse_notification(_minimal(endsAt=None, generatorURL=None)).alerts
        assert (alert.ends_at, alert.generator_url) == (None, None)


class TestTimestamps:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-26T04:02:39Z", _utc(2026, 11, 26, 4, 2, 39)),
            ("2026-11-26T04:02:39.5Z", _utc(2026, 11, 26, 4, 2, 39, 500000)),
            ("2026-11-26T04:02:39.123456Z", _utc(2026, 11, 26, 4, 2, 39, 123456)),
            ("2026-11-26T04:02:39.123456789Z", _utc(2026, 11, 26, 4, 2, 39, 123456)),
            ("2026-11-26T04:02:39.000000999Z", _utc(2026, 11, 26, 4, 2, 39)),
            ("2026-11-26t04:02:39z", _utc(2026, 11, 26, 4, 2, 39)),
            ("2026-11-26 04:02:39Z", _utc(2026, 11, 26, 4, 2, 39)),
            ("2026-11-26T06:02:39.25+02:00", _utc(2026, 11, 26, 4, 2, 39, 250000)),
            ("2026-11-25T22:32:39-05:30", _utc(2026, 11, 26, 4, 2, 39)),
            ("2026-11-26T04:02:39+00:00", _utc(2026, 11, 26, 4, 2, 39)),
            ("2026-11-26T04:02:39-00:00", _utc(2026, 11, 26, 4, 2, 39)),
        ],
    )
    def test_parses_rfc3339_to_utc(self, text: str, expected: dt.datetime) -> None:
        parsed = webhooks.parse_rfc3339(text)
        assert parsed == expected
        assert parsed.utcoffset() == dt.timedelta(0)

    @pytest.mark.parametrize("field", ["startsAt", "endsAt"])
    def test_offsets_are_normalised_in_alerts(self, field: str) -> None:
        (alert,) = webhooks.parse_notification(
            _minimal(**{field: "2026-11-26T06:02:39.123456789+02:00"})
        ).alerts
        value = alert.starts_at if field == "startsAt" else alert.ends_at
        assert value == _utc(2026, 11, 26, 4, 2, 39, 123456)
        assert value is not None
        assert value.tzinfo is dt.UTC

    @pytest.mark.parametrize(
        "zero",
        ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000000Z", "0001-01-01T00:00:00-02:00"],
    )
    def test_go_zero_time_end_means_still_firing(self, zero: str) -> None:
        (alert,) = webhooks.parse_notification(_minimal(endsAt=zero)).alerts
        assert alert.ends_at is None

    def test_real_end_time_is_kept(self) -> None:
        (alert,) = webhooks.parse_notification(_minimal(endsAt="0002-01-01T00:00:00Z")).alerts
        assert alert.ends_at == _utc(2, 1, 1)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "2026-11-26",
            "2026-11-26T04:02:39",  # no offset
            "2026-11-26T04:02:39.Z",
            "2026-11-26T04:02:39.1234567890Z",  # ten fractional digits
            "2026-11-26T04:02:39+0200",
            "2026-11-26T04:02Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T23:59:60Z",
            "1764129759",
            "not a time",
        ],
    )
    def test_rejects_bad_timestamps(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"RFC 3339|range|must be"):
            webhooks.parse_rfc3339(text)
        assert _errors(_minimal(startsAt=text)) == {
            "alerts.0.startsAt": "Not a valid RFC 3339 timestamp."
        }

    @pytest.mark.parametrize("value", [1764129759, None, ["2026-11-26T04:02:39Z"], {}])
    def test_rejects_non_string_start(self, value: Any) -> None:
        messages = _errors(_minimal(startsAt=value))
        assert list(messages) == ["alerts.0.startsAt"]

    @pytest.mark.parametrize(
        ("field", "text"),
        [("endsAt", "0001-01-01T00:00:00+02:00"), ("startsAt", "9999-12-31T23:59:59-01:00")],
    )
    def test_out_of_range_after_utc_conversion_is_a_validation_error(
        self, field: str, text: str
    ) -> None:
        assert list(_errors(_minimal(**{field: text}))) == [f"alerts.0.{field}"]


class TestInvalidBodies:
    @pytest.mark.parametrize("body", [[], [{"version": "4"}], "text", 4, None, b"{}"])
    def test_non_object_body(self, body: Any) -> None:
        with pytest.raises(ValidationError, match="JSON object") as caught:
            webhooks.parse_notification(body)
        assert caught.value.messages == {"_schema": "must be an object"}

    @pytest.mark.parametrize("field", ["version", "status", "alerts"])
    def test_missing_required_top_level_field(self, field: str) -> None:
        body = _minimal()
        del body[field]
        assert _errors(body) == {field: "Missing data for required field."}

    @pytest.mark.parametrize("field", ["status", "labels", "startsAt"])
    def test_missing_required_alert_field(self, field: str) -> None:
        body = _minimal()
        del body["alerts"][0][field]
        assert _errors(body) == {f"alerts.0.{field}": "Missing data for required field."}

    def test_path_names_the_alert_index(self, alertmanager_payload: Payload) -> None:
        body = alertmanager_payload("05-group-mixed-1-resolved-2-firing.json")
        del body["alerts"][2]["startsAt"]
        body["alerts"][1]["status"] = "pending"
        body["alerts"].pop(0)  # no alert left that could be recorded: the request fails
        assert _errors(body) == {
            "alerts.0.status": "Must be one of: firing, resolved.",
            "alerts.1.startsAt": "Missing data for required field.",
        }

    def test_bad_alerts_are_refused_and_the_good_ones_kept(
        self, alertmanager_payload: Payload
    ) -> None:
        body = alertmanager_payload("05-group-mixed-1-resolved-2-firing.json")
        del body["alerts"][2]["startsAt"]
        body["alerts"][1]["status"] = "pending"
        parsed = webhooks.parse_notification(body)
        assert [alert.labels["pod"] for alert in parsed.alerts] == ["web-1"]
        assert parsed.received == 3
        assert [r.as_json() for r in parsed.refused] == [
            {
                "index": 1,
                "field": "alerts.1.status",
                "code": "invalid",
                "reason": "alerts.1.status: Must be one of: firing, resolved.",
            },
            {
                "index": 2,
                "field": "alerts.2.startsAt",
                "code": "invalid",
                "reason": "alerts.2.startsAt: Missing data for required field.",
            },
        ]

    @pytest.mark.parametrize("version", ["3", "5", "", "4.0"])
    def test_wrong_version(self, version: str) -> None:
        body = _minimal()
        body["version"] = version
        assert _errors(body) == {"version": "Only webhook version 4 is supported."}

    def test_version_must_be_a_string(self) -> None:
        body = _minimal()
        body["version"] = 4
        assert _errors(body) == {"version": "Not a valid string."}

    @pytest.mark.parametrize("status", ["pending", "FIRING", "", None])
    def test_bad_top_level_status(self, status: Any) -> None:
        body = _minimal()
        body["status"] = status
        assert list(_errors(body)) == ["status"]

    @pytest.mark.parametrize(
        ("field", "value", "path"),
        [
            ("alerts", {"0": {}}, "alerts"),
            ("alerts", "x", "alerts"),
            ("groupLabels", ["alertname"], "groupLabels"),
            ("commonLabels", "x", "commonLabels"),
            ("commonAnnotations", 3, "commonAnnotations"),
            ("truncatedAlerts", -1, "truncatedAlerts"),
            ("truncatedAlerts", "many", "truncatedAlerts"),
            ("groupKey", 7, "groupKey"),
            ("receiver", ["r"], "receiver"),
            ("externalURL", {}, "externalURL"),
        ],
    )
    def test_wrong_top_level_types(self, field: str, value: Any, path: str) -> None:
        body = _minimal()
        body[field] = value
        assert list(_errors(body)) == [path]

    @pytest.mark.parametrize(
        ("field", "value", "path", "problem"),
        [
            ("status", "pending", "alerts.0.status", "Must be one of: firing, resolved."),
            ("labels", {}, "alerts.0.labels", "An alert needs at least one label."),
            ("labels", ["alertname"], "alerts.0.labels", "Not a valid mapping type."),
            ("labels", {"pod": 3}, "alerts.0.labels.pod.value", "Not a valid string."),
            ("labels", {"pod": None}, "alerts.0.labels.pod.value", "Field may not be null."),
            ("annotations", "x", "alerts.0.annotations", "Not a valid mapping type."),
            ("annotations", {"n": 1}, "alerts.0.annotations.n.value", "Not a valid string."),
            ("generatorURL", 5, "alerts.0.generatorURL", "Not a valid string."),
            (
                "fingerprint",
                "7C8F1B9300292754",
                "alerts.0.fingerprint",
                "Must be lowercase hex digits.",
            ),
            ("fingerprint", "", "alerts.0.fingerprint", "Must be lowercase hex digits."),
            ("fingerprint", "xyz", "alerts.0.fingerprint", "Must be lowercase hex digits."),
            ("fingerprint", "a" * 65, "alerts.0.fingerprint", "Must be lowercase hex digits."),
        ],
    )
    def test_wrong_alert_fields(self, field: str, value: Any, path: str, problem: str) -> None:
        assert _errors(_minimal(**{field: value})) == {path: problem}

    @pytest.mark.parametrize(
        ("alert", "path"),
        [
            (None, "alerts.1"),
            ("firing", "alerts.1._schema"),
            (3, "alerts.1._schema"),
            ([], "alerts.1._schema"),
        ],
    )
    def test_alert_that_is_not_an_object(self, alert: Any, path: str) -> None:
        body = _minimal()
        body["alerts"].append(alert)
        (refusal,) = webhooks.parse_notification(body).refused
        assert (refusal.index, refusal.field, refusal.code) == (1, path, "invalid")
        body["alerts"].pop(0)
        assert list(_errors(body)) == [path.replace("alerts.1", "alerts.0")]

    def test_reports_every_bad_field_at_once(self) -> None:
        body = _minimal(labels={}, startsAt="yesterday")
        body["version"] = "3"
        assert sorted(_errors(body)) == ["alerts.0.labels", "alerts.0.startsAt", "version"]

    def test_error_is_chained_to_marshmallow(self) -> None:
        with pytest.raises(ValidationError) as caught:
            webhooks.parse_notification({})
        assert type(caught.value.__cause__).__module__.startswith("marshmallow")

    def test_fingerprint_with_trailing_newline_is_rejected(self) -> None:
        assert list(_errors(_minimal(fingerprint="7c8f1b9300292754\n"))) == ["alerts.0.fingerprint"]
