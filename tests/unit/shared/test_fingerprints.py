"""label_set_fingerprint must agree bit for bit with AlertManager's own fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.domain import fingerprints

_FIXTURES = Path(__file__).parents[2] / "fixtures" / "alertmanager"
_CAPTURED = [
    pytest.param(alert["labels"], alert["fingerprint"], id=f"{path.stem}[{index}]")
    for path in sorted(_FIXTURES.glob("0*.json"))
    for index, alert in enumerate(json.loads(path.read_text())["alerts"])
]


def _fnv1a64(data: bytes) -> int:
    """Independent FNV-1a, checked below against the published test vectors."""
    digest = 0xCBF29CE484222325
    for byte in data:
        digest = ((digest ^ byte) * 0x100000001B3) % 2**64
    return digest


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0xCBF29CE484222325), (b"a", 0xAF63DC4C8601EC8C), (b"foobar", 0x85944171F73967E8)],
)
def test_reference_fnv1a_matches_published_vectors(data: bytes, expected: int) -> None:
    assert _fnv1a64(data) == expected


def test_fixtures_hold_alerts() -> None:
    # Guards the parametrisation below against silently collecting nothing.
    assert len(_CAPTURED) == 7


@pytest.mark.parametrize(("labels", "expected"), _CAPTURED)
def test_reproduces_alertmanager_fingerprint(labels: dict[str, str], expected: str) -> None:
    assert fingerprints.label_set_fingerprint(labels) == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # prometheus/common model/signature_test.go, TestLabelsToSignature.
        pytest.param({}, 14695981039346656037, id="empty"),
        pytest.param(
            {"name": "garland, briggs", "fear": "love is not enough"},
            5799056148416392346,
            id="two-labels",
        ),
    ],
)
def test_matches_prometheus_signature_vectors(labels: dict[str, str], expected: int) -> None:
    assert fingerprints.label_set_fingerprint(labels) == f"{expected:016x}"


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "Ünïcödé", "namespace": "日本"},
        {"b": "2", "a": "1", "c": ""},
        {"pod": "x\xffy"},
        {"nämé": "v", "zone": "ü"},  # UTF-8 label names (AlertManager >= 0.27)
    ],
)
def test_hashes_sorted_names_and_utf8_values_with_separators(labels: dict[str, str]) -> None:
    data = b"".join(
        name.encode() + b"\xff" + labels[name].encode() + b"\xff" for name in sorted(labels)
    )
    assert fingerprints.label_set_fingerprint(labels) == f"{_fnv1a64(data):016x}"


def test_does_not_depend_on_insertion_order() -> None:
    forward = {"alertname": "A", "namespace": "prod", "pod": "p"}
    backward = dict(reversed(list(forward.items())))
    assert fingerprints.label_set_fingerprint(forward) == fingerprints.label_set_fingerprint(
        backward
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param({"a": "bc"}, {"ab": "c"}, id="separator-between-name-and-value"),
        # Collides if values were encoded as Latin-1, where U+00FF is the separator byte.
        pytest.param({"a": "b", "c": "d"}, {"a": "b\xffc\xffd"}, id="separator-never-in-utf8"),
        pytest.param({"a": "b"}, {"a": "b", "c": ""}, id="empty-valued-label-counts"),
        pytest.param({"a": "b"}, {"a": "B"}, id="value-case"),
    ],
)
def test_distinguishes_label_sets(left: dict[str, str], right: dict[str, str]) -> None:
    assert fingerprints.label_set_fingerprint(left) != fingerprints.label_set_fingerprint(right)


@pytest.mark.parametrize("labels", [{}, {"a": "b"}, {"alertname": "x" * 1000}])
def test_is_sixteen_lowercase_hex_digits(labels: dict[str, str]) -> None:
    printed = fingerprints.label_set_fingerprint(labels)
    assert len(printed) == 16
    assert printed == printed.lower()
    int(printed, 16)
