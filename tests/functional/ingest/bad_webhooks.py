"""A corpus of bad (and borderline) AlertManager webhooks, with what each must do.

Every case says the status it must get and how many of its alerts must be recorded
(``new``) and refused; a 4xx must write nothing at all. Alerts carry a ``case``
label so that no two cases deduplicate against each other. The corpus Source lets
through everything except ``severity="ignore"`` (a matcher), so that a bad alert of
an otherwise filtered kind is covered too.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

STARTS = "2026-11-26T04:02:39.123456789Z"
SOURCE_MATCHERS = ['severity!~"ignore"']


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    status: int
    new: int = 0
    refused: int = 0


def alert(case: str, n: int = 0, **changes: Any) -> dict[str, Any]:
    labels: Any = {"alertname": "CorpusAlert", "case": case, "n": str(n), "severity": "warning"}
    labels.update(changes.pop("labels", {}))
    if "labels_replaced" in changes:
        labels = changes.pop("labels_replaced")
    body = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"{case} #{n}"},
        "startsAt": STARTS,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
    }
    body.update(changes)
    return body


def group(*alerts: Any, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receiver": "punchingfist",
        "status": "firing",
        "alerts": list(alerts),
        "groupLabels": {"alertname": "CorpusAlert"},
        "commonLabels": {"alertname": "CorpusAlert"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "version": "4",
        "groupKey": '{}:{alertname="CorpusAlert"}',
        "truncatedAlerts": 0,
    }
    body.update(changes)
    return body


def encode(document: Any) -> bytes:
    # ensure_ascii: NUL and lone surrogates travel as \u escapes, as Go would send them.
    return json.dumps(document).encode()


def _good(case: str, count: int = 5) -> list[dict[str, Any]]:
    return [alert(case, n) for n in range(count)]


def _five_good_one_bad(name: str, **bad: Any) -> Case:
    body = group(*_good(name), alert(name, 99, **bad))
    return Case(name, encode(body), 200, new=5, refused=1)


def _one_bad(name: str, **bad: Any) -> Case:
    return Case(name, encode(group(alert(name, **bad))), 422, refused=1)


def _raw_with(name: str, fragment: str) -> bytes:
    """A valid group whose first alert also carries ``"extra": <fragment>`` verbatim."""
    text = encode(group(alert(name))).decode()
    return text.replace(
        '"status": "firing", "labels"', f'"extra": {fragment}, "status": "firing", "labels"', 1
    ).encode()


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES: list[Case] = [
    # -- the body is not a JSON document we accept: 400, nothing written ---------------
    Case("truncated-json", b'{"version": "4", "alerts": [', 400),
    Case("empty-body", b"", 400),
    Case("trailing-garbage", encode(group(alert("trailing-garbage"))) + b" x", 400),
    Case("nan", _raw_with("nan", "NaN"), 400),
    Case("infinity", _raw_with("infinity", "Infinity"), 400),
    Case("minus-infinity", _raw_with("minus-infinity", "-Infinity"), 400),
    Case("overflowing-float", _raw_with("overflowing-float", "1e400"), 400),
    Case("overflowing-negative", _raw_with("overflowing-negative", "-1e400"), 400),
    Case(
        "nan-as-label-value",
        encode(group(alert("nan-as-label-value"))).replace(b'"warning"', b"NaN", 1),
        400,
    ),
    Case(
        "overflow-as-truncated-alerts",
        encode(group(alert("overflow-as-truncated-alerts"))).replace(
            b'"truncatedAlerts": 0', b'"truncatedAlerts": 1e999'
        ),
        400,
    ),
    Case("integer-of-5000-digits", _raw_with("integer-of-5000-digits", "9" * 5000), 400),
    Case("nested-40-deep", _raw_with("nested-40-deep", _deep(40)), 400),
    Case("nested-995-deep", _raw_with("nested-995-deep", _deep(995)), 400),
    Case("nested-100000-deep", _raw_with("nested-100000-deep", _deep(100_000)), 400),
    Case(
        "invalid-utf8",
        encode(group(alert("invalid-utf8"))).replace(b"CorpusAlert", b"Corpus\xffAlert", 1),
        400,
    ),
    Case(
        "utf8-encoded-surrogate",
        encode(group(alert("utf8-encoded-surrogate"))).replace(b"warning", b"warn\xed\xa0\x80", 1),
        400,
    ),
    Case("utf16-body", encode(group(alert("utf16-body"))).decode().encode("utf-16"), 400),
    Case("utf8-bom", b"\xef\xbb\xbf" + encode(group(alert("utf8-bom"))), 400),
    Case(
        "raw-nul-byte",
        encode(group(alert("raw-nul-byte"))).replace(b"warning", b"warn\x00ing", 1),
        400,
    ),
    Case(
        "raw-newline-in-string",
        encode(group(alert("raw-newline-in-string"))).replace(b"warning", b"warn\ning", 1),
        400,
    ),
    # -- the envelope is wrong: 422, nothing written -----------------------------------
    Case("body-is-a-list", b"[]", 422),
    Case("body-is-a-string", b'"firing"', 422),
    Case("body-is-null", b"null", 422),
    Case("body-is-a-number", b"4", 422),
    Case("body-is-an-empty-object", b"{}", 422),
    Case("version-null", encode(group(alert("version-null"), version=None)), 422),
    Case(
        "version-missing",
        encode({k: v for k, v in group(alert("version-missing")).items() if k != "version"}),
        422,
    ),
    Case(
        "alerts-missing",
        encode({k: v for k, v in group(alert("alerts-missing")).items() if k != "alerts"}),
        422,
    ),
    Case("version-3", encode(group(alert("version-3"), version="3")), 422),
    Case("version-as-integer", encode(group(alert("version-as-integer"), version=4)), 422),
    Case("status-bogus", encode(group(alert("status-bogus"), status="bogus")), 422),
    Case("alerts-is-an-object", encode(group(alerts={"0": alert("alerts-is-an-object")})), 422),
    Case("alerts-is-a-string", encode(group(alerts="firing")), 422),
    Case("alerts-is-null", encode(group(alerts=None)), 422),
    Case("group-labels-is-a-list", encode(group(alert("gl"), groupLabels=["alertname"])), 422),
    Case("common-labels-int-value", encode(group(alert("cl"), commonLabels={"a": 1})), 422),
    Case("truncated-alerts-negative", encode(group(alert("tn"), truncatedAlerts=-1)), 422),
    # Over the INTEGER column: a 500 on SQLite (found by schemathesis, tests/e2e).
    Case("truncated-alerts-2-to-the-31", encode(group(alert("t31"), truncatedAlerts=2**31)), 422),
    Case(
        "truncated-alerts-2-to-the-104", encode(group(alert("t104"), truncatedAlerts=2**104)), 422
    ),
    # -- not one alert can be recorded: 422, nothing written ---------------------------
    _one_bad("single-nul-label", labels={"pod": "api\u0000"}),
    _one_bad("single-surrogate-label", labels={"pod": "api\ud800"}),
    _one_bad("single-long-severity", labels={"severity": "s" * 33}),
    _one_bad("single-bad-start", startsAt="yesterday"),
    Case(
        "all-of-three-bad",
        encode(
            group(
                alert("all-of-three-bad", 0, labels={"pod": "\u0000"}),
                alert("all-of-three-bad", 1, startsAt=None),
                None,
            )
        ),
        422,
        refused=3,
    ),
    # -- some alerts are bad: the good ones are recorded, the bad ones reported --------
    _five_good_one_bad("nul-in-label-value", labels={"pod": "api-\u0000-0"}),
    _five_good_one_bad("nul-in-label-name", labels={"po\u0000d": "api"}),
    _five_good_one_bad("nul-in-annotation", annotations={"summary": "disk \u0000 full"}),
    _five_good_one_bad("nul-in-annotation-name", annotations={"\u0000": "x"}),
    _five_good_one_bad("nul-in-generator-url", generatorURL="http://x/\u0000"),
    _five_good_one_bad("nul-in-filtered-out-alert", labels={"severity": "ignore", "pod": "\u0000"}),
    _five_good_one_bad("lone-high-surrogate", labels={"pod": "api-\ud800"}),
    _five_good_one_bad("lone-low-surrogate-in-name", annotations={"\udc00": "x"}),
    _five_good_one_bad("severity-33-chars", labels={"severity": "s" * 33}),
    _five_good_one_bad("alertname-256-chars", labels={"alertname": "A" * 256}),
    _five_good_one_bad("fingerprint-uppercase", fingerprint="7C8F1B9300292754"),
    _five_good_one_bad("fingerprint-65-chars", fingerprint="a" * 65),
    _five_good_one_bad("fingerprint-with-nul", fingerprint="7c8f\u0000"),
    _five_good_one_bad("start-not-a-time", startsAt="yesterday"),
    _five_good_one_bad("start-is-a-number", startsAt=1764129759),
    _five_good_one_bad("start-year-zero", startsAt="0000-01-01T00:00:00Z"),
    _five_good_one_bad("start-without-offset", startsAt="2026-11-26T04:02:39"),
    _five_good_one_bad("start-with-nul", startsAt="2026-11-26T04:02:39Z\u0000"),
    _five_good_one_bad("end-before-year-one-in-utc", endsAt="0001-01-01T00:00:00+02:00"),
    _five_good_one_bad("start-after-year-9999-in-utc", startsAt="9999-12-31T23:59:59-01:00"),
    _five_good_one_bad("labels-empty", labels_replaced={}),
    _five_good_one_bad("labels-a-list", labels_replaced=["alertname"]),
    _five_good_one_bad("labels-missing", labels_replaced=None),
    _five_good_one_bad("status-pending", status="pending"),
    _five_good_one_bad("status-with-nul", status="firing\u0000"),
    _five_good_one_bad("label-value-integer", labels={"pod": 3}),
    _five_good_one_bad("label-value-null", labels={"pod": None}),
    _five_good_one_bad("annotations-a-list", annotations=["summary"]),
    _five_good_one_bad("generator-url-a-number", generatorURL=5),
    Case("alert-is-null", encode(group(*_good("alert-is-null"), None)), 200, new=5, refused=1),
    Case("alert-is-a-string", encode(group(*_good("alert-str"), "x")), 200, new=5, refused=1),
    Case("alert-is-a-list", encode(group(*_good("alert-list"), [])), 200, new=5, refused=1),
    # -- odd but storable: everything recorded -----------------------------------------
    Case("empty-alerts-list", encode(group()), 200),
    Case(
        "valid-surrogate-pair",
        encode(group(alert("valid-surrogate-pair", labels={"pod": "api-\U0001f600"}))),
        200,
        new=1,
    ),
    Case(
        "severity-32-chars",
        encode(group(alert("severity-32-chars", labels={"severity": "s" * 32}))),
        200,
        new=1,
    ),
    Case(
        "alertname-255-chars",
        encode(group(alert("alertname-255-chars", labels={"alertname": "A" * 255}))),
        200,
        new=1,
    ),
    Case(
        "nul-in-common-labels-and-receiver",
        encode(
            group(
                *_good("nul-in-common-labels"),
                commonLabels={"x": "\u0000"},
                receiver="r\u0000",
                groupKey="\ud800",
            )
        ),
        200,
        new=5,
    ),
    Case(
        "unknown-fields-with-nul-and-surrogates",
        encode(group(alert("unknown-fields", **{"\u0000": "\ud800"}), extra={"a\u0000": [1]})),
        200,
        new=1,
    ),
    Case(
        "5000-labels",
        encode(group(alert("5000-labels", labels={f"l{i}": str(i) for i in range(5000)}))),
        200,
        new=1,
    ),
    Case(
        "1-MiB-label-value",
        encode(group(alert("1-MiB-label-value", labels={"blob": "x" * (1 << 20)}))),
        200,
        new=1,
    ),
    Case(
        "3000-alerts",
        encode(group(*[alert("3000-alerts", n) for n in range(3000)])),
        200,
        new=3000,
    ),
    Case(
        "truncated-alerts-2-to-the-31-minus-1",
        encode(group(alert("t31-1"), truncatedAlerts=2**31 - 1)),
        200,
        new=1,
    ),
    Case(
        "largest-finite-float",
        _raw_with("largest-finite-float", "1.7976931348623157e308"),
        200,
        new=1,
    ),
    Case("underflowing-float", _raw_with("underflowing-float", "1e-400"), 200, new=1),
    Case("nested-32-deep", _raw_with("nested-32-deep", _deep(28)), 200, new=1),
    Case(
        "duplicate-keys",
        encode(group(alert("duplicate-keys"))).replace(
            b'"version": "4"', b'"version": "3", "version": "4"'
        ),
        200,
        new=1,
    ),
    Case(
        "same-alert-twice-in-one-group",
        encode(group(alert("same-alert-twice"), alert("same-alert-twice"))),
        200,
        new=1,
    ),
]
