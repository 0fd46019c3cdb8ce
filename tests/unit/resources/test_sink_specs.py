"""Sink specs: one config schema per type, registered in SINK_SCHEMAS."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ValidationError
from shared.resources import schemas
from shared.resources.sinks import SINK_SCHEMAS


def normalize(spec: dict[str, Any]) -> dict[str, Any]:
    return schemas.normalize("Sink", "sink", spec)


def errors(spec: dict[str, Any]) -> dict[str, object]:
    with pytest.raises(ValidationError) as info:
        normalize(spec)
    return info.value.messages


def test_every_seed_sink_type_is_registered() -> None:
    assert set(SINK_SCHEMAS) == {"slack", "alertmanager", "stdout", "webhook"}


def test_defaults_per_type() -> None:
    slack = normalize(
        {
            "type": "slack",
            "config": {"channel": "#ops", "tokenSecretRef": {"name": "s", "key": "t"}},
        }
    )
    assert slack["config"]["threadUpdates"] is True
    am = normalize({"type": "alertmanager", "config": {"url": "http://am:9093"}})
    assert am["config"] == {
        "url": "http://am:9093",
        "actions": ["annotate"],
        "silenceDuration": "1h",
    }
    assert normalize({"type": "stdout"})["config"] == {"format": "text"}
    hook = normalize(
        {
            "type": "webhook",
            "config": {"url": "https://x.example/hook"},
            "condition": 'run.phase == "Failed"',
        }
    )
    assert hook["config"]["headers"] == {}
    assert hook["condition"] == 'run.phase == "Failed"'


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "email"}, "spec.type"),
        ({"type": "slack", "config": {"channel": "#x"}}, "spec.config.tokenSecretRef"),
        (
            {"type": "slack", "config": {"channel": "#x", "tokenSecretRef": {"name": "s"}}},
            "spec.config.tokenSecretRef.key",
        ),
        ({"type": "alertmanager", "config": {"url": "not a url"}}, "spec.config.url"),
        (
            {"type": "alertmanager", "config": {"url": "http://am", "actions": ["resolve"]}},
            "spec.config.actions.0",
        ),
        (
            {"type": "alertmanager", "config": {"url": "http://am", "silenceDuration": "an hour"}},
            "spec.config.silenceDuration",
        ),
        ({"type": "stdout", "config": {"format": "xml"}}, "spec.config.format"),
        ({"type": "stdout", "config": {"channel": "#x"}}, "spec.config.channel"),
        ({"type": "webhook", "config": {}}, "spec.config.url"),
        ({"type": "stdout", "condition": ""}, "spec.condition"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], path: str) -> None:
    messages = errors(spec)
    assert any(key == path or key.startswith(path + ".") for key in messages), messages
