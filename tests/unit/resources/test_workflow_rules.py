"""What the engine needs of a Workflow, refused by the schema before anything runs.

Each of these Workflows used to pass ``validate`` and the controller and then fail
every run (or, for ``timeout``, was refused although the seed wrote it).
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain import workflows
from shared.errors import ValidationError
from shared.resources import schemas


def cli(name: str, *command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "cli", "command": list(command or ["true"]), **extra}


def conditional(name: str, condition: str = "true", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "conditional", "condition": condition, **extra}


def errors(spec: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        schemas.normalize("Workflow", "wf", spec)
    return {path: list(problems) for path, problems in info.value.messages.items()}  # type: ignore[call-overload]


def test_a_branch_cannot_choose_an_earlier_step_or_itself() -> None:
    messages = errors(
        {
            "steps": [
                cli("first"),
                conditional("check", then={"run": ["first"]}, **{"else": {"skip": ["check"]}}),
            ]
        }
    )
    assert messages == {
        "spec.steps.1.then.run.0": [
            "'first' is not a step after 'check': a branch can only choose among the steps "
            "that follow it (so that every run moves forward and ends)."
        ],
        "spec.steps.1.else.skip.0": [
            "'check' is not a step after 'check': a branch can only choose among the steps "
            "that follow it (so that every run moves forward and ends)."
        ],
    }


@pytest.mark.parametrize(
    ("spec", "path", "says"),
    [
        (
            {"steps": [conditional("c", "alert.labels.severity ==")]},
            "spec.steps.0.condition",
            "Expression 'alert.labels.severity ==' is not valid: unexpected 'end of template'",
        ),
        (
            {
                "steps": [cli("a")],
                "outputs": [{"name": "o", "value": "{{ steps.zzz.output.stdout"}],
            },
            "spec.outputs.0.value",
            "Template '{{ steps.zzz.output.stdout' is not valid",
        ),
        (
            {"steps": [cli("a", "echo", "{{ steps.zzz.output.stdout }}")]},
            "spec.steps.0.command.1",
            "No step named 'zzz' in this Workflow",
        ),
        (
            {"steps": [cli("a", env={"X": "{{ steps.b.output.stdout }}"}), cli("b")]},
            "spec.steps.0.env.X",
            "Step 'b' does not run before this one",
        ),
        (
            {"steps": [cli("a", command="echo {{ steps.a.output.stdout }}", **{"shell": True})]},
            "spec.steps.0.command",
            "Step 'a' does not run before this one",
        ),
        (
            {"steps": [{"name": "ai", "type": "agent", "goal": "why {{ alert.labels.pod"}]},
            "spec.steps.0.goal",
            "is not valid",
        ),
        (
            {"steps": [{"name": "ai", "type": "agent", "goal": "g", "prompt": "{{ alrt }}"}]},
            "spec.steps.0.prompt",
            "'alrt' is not in the run context",
        ),
        (
            {"steps": [cli("a", "echo", "{{ alert | nofilter }}")]},
            "spec.steps.0.command.1",
            "No filter named 'nofilter'",
        ),
    ],
)
def test_every_template_and_expression_compiles_and_reads_what_exists(
    spec: dict[str, Any], path: str, says: str
) -> None:
    messages = errors(spec)
    assert list(messages) == [path]
    assert says in messages[path][0]


def test_a_step_name_with_a_dash_is_read_with_brackets() -> None:
    steps = [cli("apply-fix"), cli("report", "echo", "{{ steps['apply-fix'].phase }}")]
    outputs = [{"name": "fixed", "value": "{{ steps.apply-fix.phase == 'Succeeded' }}"}]
    messages = errors({"steps": steps, "outputs": outputs})
    assert messages == {
        "spec.outputs.0.value": [
            "steps.apply-fix reads as steps.apply minus fix: write steps['apply-fix'] "
            "for a step name with '-'."
        ]
    }
    outputs[0]["value"] = "{{ steps['apply-fix'].phase == 'Succeeded' }}"
    schemas.normalize("Workflow", "wf", {"steps": steps, "outputs": outputs})


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [
        ({"timeout": "5m"}, 300.0),
        ({"timeout": "1h30m"}, 5400.0),
        ({"timeout": "500ms"}, 0.5),
        ({"timeoutMinutes": 2}, 120.0),
        ({"timeoutSeconds": 7}, 7.0),
    ],
)
def test_timeout_is_normalized_to_seconds(timeout: dict[str, Any], seconds: float) -> None:
    spec = schemas.normalize("Workflow", "wf", {"steps": [cli("a", **timeout)]})
    step = spec["steps"][0]
    assert step["timeoutSeconds"] == seconds
    assert "timeout" not in step
    assert "timeoutMinutes" not in step
    assert schemas.normalize("Workflow", "wf", spec) == spec
    flow = schemas.load_workflow("ns", "wf", {"steps": [cli("a", **timeout)]})
    assert flow.steps[0].timeout_seconds == seconds


@pytest.mark.parametrize(
    ("timeout", "path", "says"),
    [
        ({"timeout": "5m", "timeoutMinutes": 5}, "spec.steps.0.timeoutMinutes", "at most one of"),
        ({"timeout": "5m", "timeoutSeconds": 5}, "spec.steps.0.timeoutSeconds", "at most one of"),
        ({"timeout": "5 minutes"}, "spec.steps.0.timeout", "Must be a duration such as 30s"),
        ({"timeout": "0s"}, "spec.steps.0.timeout", "Must be longer than zero."),
    ],
)
def test_bad_timeouts(timeout: dict[str, Any], path: str, says: str) -> None:
    messages = errors({"steps": [cli("a", **timeout)]})
    assert list(messages) == [path]
    assert says in messages[path][0]


def test_limits_of_zero_mean_no_cap() -> None:
    flow = schemas.load_workflow(
        "ns", "wf", {"steps": [cli("a")], "limits": {"maxConcurrentRuns": 0}}
    )
    assert flow.limits == workflows.Limits(0, 1, 3600)


def test_the_engine_loader_refuses_what_validate_refuses_naming_the_field() -> None:
    spec = {"steps": [cli("first"), conditional("check", then={"run": ["first"]})]}
    with pytest.raises(workflows.WorkflowError) as info:
        schemas.load_workflow("ops", "triage", spec)
    assert str(info.value).startswith(
        "Workflow ops/triage: spec.steps.1.then.run.0: 'first' is not a step after 'check'"
    )


def test_the_engine_loader_builds_the_dataclasses_with_the_schemas_defaults() -> None:
    flow = schemas.load_workflow(
        "ns",
        "wf",
        {
            "runtime": {"image": "busybox", "environment": {"A": "1"}},
            "steps": [cli("a"), conditional("b", then={"skip": ["c"]}), cli("c")],
            "outputs": [{"name": "o", "value": "{{ steps.a.phase }}"}],
            "sinks": ["slack"],
        },
    )
    assert [(s.index, s.name, s.type) for s in flow.steps] == [
        (0, "a", "cli"),
        (1, "b", "conditional"),
        (2, "c", "cli"),
    ]
    a = flow.steps[0]
    assert (a.retries, a.continue_on_error, a.timeout_seconds, a.config["runner"]) == (
        0,
        False,
        None,
        "local",
    )
    assert flow.steps[1].then == workflows.Branch(skip=("c",))
    assert flow.steps[1].otherwise == workflows.Branch()
    assert flow.limits == workflows.Limits(10, 1, 3600)
    assert flow.runtime == workflows.Runtime(image="busybox", environment={"A": "1"})
    assert flow.outputs == (workflows.Output("o", "{{ steps.a.phase }}"),)
    assert flow.sinks == ("slack",)
