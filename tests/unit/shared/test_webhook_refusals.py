"""What the database would refuse is refused before it: bodies, then alert by alert.

A body that is not JSON we accept is MalformedBodyError (the API's 400); an alert
PostgreSQL could not store is refused alone with its index, field and reason, and
the rest of its group is kept.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from shared.db.models import Alert, SourceEvent
from shared.domain import webhooks
from shared.domain.webhooks import MalformedBodyError


def _alert(n: int = 0, **changes: Any) -> dict[str, Any]:
    labels = {"alertname": "X", "n": str(n), **changes.pop("labels", {})}
    return {"status": "firing", "labels": labels, "startsAt": "2026-11-26T04:02:39Z", **changes}


def _group(*alerts: Any) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": list(alerts)}


class TestLoadJson:
    @pytest.mark.parametrize(
        ("raw", "needle"),
        [
            (b'{"a": NaN}', "NaN is not a JSON number"),
            (b'{"a": Infinity}', "Infinity is not a JSON number"),
            (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
            (b'{"a": 1e400}', "too large for a double"),
            (b'{"a": -1.5e309}', "too large for a double"),
            (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
            (b"[" * 995 + b"]" * 995, "nested deeper than 32"),
            (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32"),
            (b'{"a": ' + b"[" * 32 + b"]" * 32 + b"}", "nested deeper than 32"),
            (b'{"a": "\xff"}', "not UTF-8"),
            (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),
            ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
            (b'\xef\xbb\xbf{"a": 1}', "not valid JSON"),
            (b'{"a": "x\x00"}', "not valid JSON"),
            (b"", "not valid JSON"),
        ],
    )
    def test_refuses_with_the_reason(self, raw: bytes, needle: str) -> None:
        with pytest.raises(MalformedBodyError, match=needle):
            webhooks.load_json(raw)

    def test_recursion_error_is_chained(self) -> None:
        with pytest.raises(MalformedBodyError) as caught:
            webhooks.load_json(b"[" * 100_000 + b"]" * 100_000)
        assert isinstance(caught.value.__cause__, RecursionError)

    @pytest.mark.parametrize(
        ("raw", "value"),
        [
            (b'{"a": 1.7976931348623157e308}', 1.7976931348623157e308),
            (b'{"a": 1e-400}', 0.0),
            (b'{"a": "\\u0000\\ud800"}', "\x00\ud800"),
        ],
    )
    def test_accepts_what_json_allows(self, raw: bytes, value: Any) -> None:
        assert webhooks.load_json(raw) == {"a": value}

    def test_nesting_up_to_the_limit_is_accepted(self) -> None:
        depth = webhooks.MAX_DEPTH - 1  # plus the body object itself
        loaded = webhooks.load_json(b'{"a": ' + b"[" * depth + b"]" * depth + b"}")
        assert isinstance(loaded["a"], list)


class TestRefusedAlerts:
    @pytest.mark.parametrize(
        ("bad", "field", "code"),
        [
            ({"labels": {"pod": "a\x00"}}, "alerts.1.labels.pod", "nul"),
            ({"labels": {"p\x00d": "a"}}, "alerts.1.labels", "nul"),
            ({"annotations": {"summary": "\x00"}}, "alerts.1.annotations.summary", "nul"),
            ({"generatorURL": "http://x/\x00"}, "alerts.1.generatorURL", "nul"),
            ({"labels": {"pod": "a\ud800"}}, "alerts.1.labels.pod", "surrogate"),
            ({"annotations": {"\udc00": "x"}}, "alerts.1.annotations", "surrogate"),
            ({"labels": {"severity": "s" * 33}}, "alerts.1.labels.severity", "too_long"),
            ({"labels": {"alertname": "A" * 256}}, "alerts.1.labels.alertname", "too_long"),
            ({"startsAt": "2026-11-26T04:02:39Z\x00"}, "alerts.1.startsAt", "invalid"),
            ({"status": "firing\x00"}, "alerts.1.status", "invalid"),
        ],
    )
    def test_bad_alert_is_refused_and_the_others_kept(
        self, bad: dict[str, Any], field: str, code: str
    ) -> None:
        parsed = webhooks.parse_notification(_group(_alert(0), _alert(1, **bad), _alert(2)))
        assert [alert.labels["n"] for alert in parsed.alerts] == ["0", "2"]
        (refusal,) = parsed.refused
        assert (refusal.index, refusal.field, refusal.code) == (1, field, code)
        assert refusal.reason.startswith(field + ": ")
        assert parsed.received == 3

    def test_limits_are_inclusive(self) -> None:
        labels = {"severity": "s" * 32, "alertname": "A" * 255}
        parsed = webhooks.parse_notification(_group(_alert(labels=labels)))
        assert parsed.refused == ()
        assert parsed.alerts[0].severity == "s" * 32

    def test_valid_surrogate_pairs_are_text(self) -> None:
        body = webhooks.load_json(json.dumps(_group(_alert(labels={"pod": "\U0001f600"}))).encode())
        (alert,) = webhooks.parse_notification(body).alerts
        assert alert.labels["pod"] == "\U0001f600"

    def test_every_alert_refused_raises_with_the_refusals(self) -> None:
        with pytest.raises(webhooks.AllAlertsRefusedError) as caught:
            webhooks.parse_notification(_group(_alert(labels={"pod": "\x00"}), None))
        assert [r.code for r in caught.value.refused] == ["nul", "invalid"]
        assert set(caught.value.messages) == {"alerts.0.labels.pod", "alerts.1"}

    def test_a_bad_envelope_is_not_an_alert_refusal(self) -> None:
        body = _group(_alert(labels={"pod": "\x00"}))
        body["version"] = "3"
        with pytest.raises(webhooks.ValidationError) as caught:
            webhooks.parse_notification(body)
        assert not isinstance(caught.value, webhooks.AllAlertsRefusedError)

    def test_field_paths_quote_unprintable_names_safely(self) -> None:
        parsed = webhooks.parse_notification(
            _group(_alert(0), _alert(1, labels={"k\x00" + "x" * 500: 3}))
        )
        (refusal,) = parsed.refused
        assert "\x00" not in refusal.field
        assert "\\u0000" in refusal.field
        assert len(refusal.field) <= 200

    def test_column_sizes_match_the_alerts_table(self) -> None:
        columns = Alert.__table__.c  # type: ignore[attr-defined]
        assert isinstance(columns.severity.type, sa.String)
        assert columns.severity.type.length == webhooks.MAX_SEVERITY
        assert columns.alert_name.type.length == webhooks.MAX_ALERT_NAME

    def test_truncated_alerts_fit_their_integer_column(self) -> None:
        column = SourceEvent.__table__.c.alerts_truncated  # type: ignore[attr-defined]
        assert isinstance(column.type, sa.Integer)
        assert not isinstance(column.type, sa.BigInteger)
        assert webhooks.MAX_TRUNCATED_ALERTS == 2**31 - 1


class TestStorable:
    def test_escapes_what_postgresql_refuses_everywhere(self) -> None:
        body = {"a\x00": ["x\x00y", {"k": "\ud800"}], "ok": "caf\u00e9 \U0001f600", "n": 1.5}
        assert webhooks.storable(body) == {
            "a\\u0000": ["x\\u0000y", {"k": "\\ud800"}],
            "ok": "caf\u00e9 \U0001f600",
            "n": 1.5,
        }

    def test_clean_documents_are_unchanged(self) -> None:
        body = {"version": "4", "alerts": [{"labels": {"a": "b"}}], "x": None, "t": True}
        assert webhooks.storable(body) == body
