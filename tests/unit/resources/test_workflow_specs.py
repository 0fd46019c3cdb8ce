"""Workflow specs: steps validated by their type's schema, and whole-workflow rules."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ValidationError
from shared.resources import schemas
from shared.resources.steps import STEP_SCHEMAS


def cli(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "cli", "command": ["true"], **extra}


def shell_cli(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {**cli(name, command=script, **extra), "shell": True}


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
        (
            {"steps": [cli("a")], "runtime": {"environment": {"PF_T1": "x"}}},
            "spec.runtime.environment",
        ),
        ({"steps": [cli("a", env={"PF_T2": "x"})]}, "spec.steps.0.env"),
        (
            {"steps": [cli("a")], "runtime": {"resources": {"limits": {"memory": "lots"}}}},
            "spec.runtime.resources.limits",
        ),
        (
            {"steps": [cli("a")], "runtime": {"resources": {"requests": {"gpu": "1"}}}},
            "spec.runtime.resources.requests",
        ),
        ({"steps": [cli("a")], "runtime": {"serviceAccountName": "Bad"}}, "spec.runtime"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], path: str) -> None:
    messages = errors(spec)
    assert any(key == path or key.startswith(path + ".") for key in messages), messages


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        (
            shell_cli("a", "echo 'pod {{ alert.labels.pod }}'"),
            "line 1, column 11: {{ alert.labels.pod }} is inside single quotes",
        ),
        (
            shell_cli("a", "kubectl logs `echo {{ alert.labels.pod }}`"),
            "is inside backticks",
        ),
        (shell_cli("a", "{% if x %}rm{% endif %}"), "is a block"),
        (
            cli("a", command=["sh", "-c", "kubectl logs {{ alert.labels.pod }} | tail"]),
            "command[2] is the script of a shell's -c",
        ),
    ],
)
def test_templates_that_cannot_be_protected_are_refused(step: dict[str, Any], problem: str) -> None:
    messages = errors({"steps": [step]})
    [message, *_] = messages["spec.steps.0.command"]  # type: ignore[misc]
    assert problem in message
    assert '"$POD"' in message or '"$1"' in message or "block" in message


def test_safe_shell_templates_and_job_runtime_fields_are_accepted() -> None:
    spec = normalize(
        {
            "runtime": {
                "serviceAccountName": "triage-steps",
                "automountServiceAccountToken": True,
                "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
            },
            "steps": [
                shell_cli(
                    "a",
                    'kubectl logs -n "{{ alert.labels.namespace }}" -- {{ alert.labels.pod }}',
                    allowOptionLikeValues=True,
                ),
                cli("b", command=["sh", "-c", 'kubectl logs "$1"', "sh", "{{ alert.labels.pod }}"]),
            ],
        }
    )
    assert spec["runtime"]["serviceAccountName"] == "triage-steps"
    assert spec["steps"][0]["allowOptionLikeValues"] is True
    assert spec["steps"][1]["allowOptionLikeValues"] is False
