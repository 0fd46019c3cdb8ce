"""Workflow specs: steps validated by their type's schema, and whole-workflow rules."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ValidationError
from shared.resources import schemas
from shared.resources.steps import STEP_SCHEMAS


def cli(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "cli", "command": ["true"], **extra}


def normalize(spec: dict[str, Any]) -> dict[str, Any]:
    return schemas.normalize("Workflow", "wf", spec)


def errors(spec: dict[str, Any]) -> dict[str, object]:
    with pytest.raises(ValidationError) as info:
        normalize(spec)
    return info.value.messages


def test_defaults_and_cr_field_names() -> None:
    spec = normalize(
        {
            "steps": [
                cli("first"),
                {
                    "name": "branch",
                    "type": "conditional",
                    "condition": "true",
                    "else": {"skip": ["last"]},
                },
                cli("last"),
            ]
        }
    )
    assert spec["limits"] == {
        "maxConcurrentRuns": 10,
        "maxRunsPerFingerprint": 1,
        "fingerprintWindowSeconds": 3600,
    }
    assert spec["runtime"] == {"environment": {}}
    assert spec["outputs"] == []
    assert spec["sinks"] == []
    conditional = spec["steps"][1]
    assert conditional["else"] == {"skip": ["last"]}
    assert "else_" not in conditional
    assert spec["steps"][0]["runner"] == "local"
    assert normalize(spec) == spec


def test_each_step_is_checked_by_its_type() -> None:
    messages = errors(
        {
            "steps": [
                cli("a", command="echo hi"),
                {"name": "b", "type": "agent"},
                {"name": "c", "type": "conditional"},
            ]
        }
    )
    assert set(messages) == {"spec.steps.0.command", "spec.steps.1.goal", "spec.steps.2.condition"}


def test_unknown_step_type_lists_the_known_ones() -> None:
    messages = errors({"steps": [cli("a"), {"name": "b", "type": "teleport"}]})
    assert list(messages) == ["spec.steps.1.type"]
    for known in STEP_SCHEMAS:
        assert known in str(messages["spec.steps.1.type"])


def test_step_names_are_unique() -> None:
    messages = errors({"steps": [cli("a"), cli("b"), cli("a")]})
    assert list(messages) == ["spec.steps.2.name"]


def test_branches_name_steps_of_this_workflow() -> None:
    messages = errors(
        {
            "steps": [
                {
                    "name": "check",
                    "type": "conditional",
                    "condition": "true",
                    "then": {"run": ["fix", "ghost"]},
                    "else": {"skip": ["check"]},
                },
                cli("fix"),
            ]
        }
    )
    assert set(messages) == {"spec.steps.0.then.run.1", "spec.steps.0.else.skip.0"}


def test_sinks_and_outputs_are_unique() -> None:
    messages = errors(
        {
            "steps": [cli("a")],
            "sinks": ["slack", "slack"],
            "outputs": [{"name": "o", "value": "1"}, {"name": "o", "value": "2"}],
        }
    )
    assert set(messages) == {"spec.sinks.1", "spec.outputs.1.name"}


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({}, "spec.steps"),
        ({"steps": []}, "spec.steps"),
        ({"steps": ["cli"]}, "spec.steps.0"),
        (
            {"steps": [cli("a")], "runtime": {"llmConfig": {"provider": "local"}}},
            "spec.runtime.llmConfig.model",
        ),
        (
            {"steps": [cli("a")], "runtime": {"llmConfig": {"model": "m", "provider": "skynet"}}},
            "spec.runtime.llmConfig.provider",
        ),
        (
            {"steps": [cli("a")], "limits": {"maxConcurrentRuns": -1}},
            "spec.limits.maxConcurrentRuns",
        ),
        ({"steps": [cli("a")], "sinks": ["Bad Name"]}, "spec.sinks.0"),
        ({"steps": [cli("a")], "outputs": [{"name": "o"}]}, "spec.outputs.0.value"),
        (
            {"steps": [cli("a")], "runtime": {"environment": {"1BAD": "x"}}},
            "spec.runtime.environment",
        ),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], path: str) -> None:
    messages = errors(spec)
    assert any(key == path or key.startswith(path + ".") for key in messages), messages
