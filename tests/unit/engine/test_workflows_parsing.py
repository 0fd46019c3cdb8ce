"""Parsing stored Workflow specs: defaults, refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from services.engine.core import workflows

KNOWN = {"cli", "agent", "conditional"}


def parse(spec: dict[str, Any]) -> workflows.Workflow:
    return workflows.parse("default", "triage", spec, KNOWN)


def test_defaults_are_applied_to_a_minimal_spec() -> None:
    flow = parse({"steps": [{"name": "a", "type": "cli", "command": ["true"]}]})
    step = flow.steps[0]
    assert (step.index, step.retries, step.continue_on_error, step.timeout_seconds) == (
        0,
        0,
        False,
        None,
    )
    assert flow.limits == workflows.Limits(10, 1, 3600)
    assert (flow.sinks, flow.outputs, flow.runtime.environment) == ((), (), {})


def test_timeouts_and_runtime() -> None:
    flow = parse(
        {
            "runtime": {"image": "busybox", "environment": {"A": 1}},
            "steps": [
                {"name": "a", "type": "cli", "command": ["x"], "timeoutMinutes": 2},
                {"name": "b", "type": "cli", "command": ["x"], "timeoutSeconds": 1.5},
            ],
            "sinks": ["slack", {"name": "am"}, "slack"],
            "outputs": [{"name": "o", "value": "{{ 1 }}"}],
        }
    )
    assert [s.timeout_seconds for s in flow.steps] == [120.0, 1.5]
    assert flow.runtime.image == "busybox"
    assert flow.runtime.environment == {"A": "1"}
    assert flow.sinks == ("slack", "am")
    assert flow.outputs == (workflows.Output("o", "{{ 1 }}"),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"steps": [{"name": "a", "type": "teleport"}]},
            "steps[0] (a): unknown step type 'teleport'",
        ),
        (
            {"steps": [{"name": "a", "type": "cli"}, {"name": "a", "type": "cli"}]},
            "steps[1]: duplicate step name 'a'",
        ),
        ({"steps": [{"type": "cli"}]}, "steps[0]: name is required"),
        ({"steps": [{"name": "a", "type": "cli", "retries": -1}]}, "retries must be"),
        ({"steps": [{"name": "a", "type": "conditional"}]}, "condition is required"),
        (
            {
                "steps": [
                    {"name": "a", "type": "cli"},
                    {
                        "name": "c",
                        "type": "conditional",
                        "condition": "true",
                        "then": {"run": ["a"]},
                    },
                ]
            },
            "(c).then.run: 'a' is not a step after 'c'",
        ),
        (
            {
                "steps": [
                    {
                        "name": "c",
                        "type": "conditional",
                        "condition": "1",
                        "else": {"stop": "maybe"},
                    }
                ]
            },
            "else.stop: must be one of succeeded, failed",
        ),
        ({"limits": {"maxConcurrentRuns": "many"}}, "limits.maxConcurrentRuns must be"),
    ],
)
def test_refusals_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(workflows.WorkflowError) as caught:
        parse(spec)
    assert message in str(caught.value)
    assert str(caught.value).startswith("Workflow default/triage")
