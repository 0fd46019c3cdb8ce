"""The agent step's settings: the schema's tool names and runtime.tools as tools see them."""

from __future__ import annotations

import pytest

from services.engine import tools as _tools
from services.engine.core.remediation import ACTIONS
from services.engine.steps import agent
from services.engine.tools import registries
from shared.resources import steps, workflows
from shared.resources.schemas import load_workflow
from shared.resources.workflows import REMEDIATION_ACTIONS

assert _tools


def test_the_schema_names_exactly_the_registered_tools() -> None:
    assert sorted(steps.AGENT_TOOLS) == registries.default_registry.names()
    assert sorted(REMEDIATION_ACTIONS) == sorted(ACTIONS)


def test_runtime_tools_become_tool_settings() -> None:
    flow = load_workflow(
        "default",
        "triage",
        {
            "runtime": {
                "tools": {
                    "prometheus": {"url": "http://prometheus:9090"},
                    "curl": {"hosts": ["shop.example.com", "*.internal"]},
                    "kubectl": {"namespaces": ["shop"]},
                    "scripts": [{"name": "disk", "command": ["df", "-h"]}],
                    "remediation": {"actions": ["delete-pod"], "maxReplicas": 5},
                }
            },
            "steps": [{"name": "look", "type": "agent", "goal": "why", "tools": ["kubectl"]}],
        },
    )
    settings = agent.tool_settings(flow.runtime.tools, "http://127.0.0.1:1")
    assert settings.prometheus_url == "http://prometheus:9090"
    assert settings.curl_hosts == {"shop.example.com", "*.internal"}
    assert settings.kubectl_namespaces == {"shop"}
    assert settings.scripts["disk"].command == ("df", "-h")
    assert settings.scripts["disk"].timeout == 30.0
    assert settings.remediation.actions == {"delete-pod"}
    assert settings.remediation.max_replicas == 5
    assert settings.kubernetes_api_url == "http://127.0.0.1:1"
    step = flow.steps[0].config
    assert (step["approvalTimeout"], step["verifyTimeout"]) == ("30m", "2m")


def test_no_runtime_tools_means_the_safe_defaults() -> None:
    settings = agent.tool_settings({})
    assert settings.prometheus_url == ""
    assert settings.curl_hosts == frozenset()
    assert settings.remediation.actions == frozenset(ACTIONS)


@pytest.mark.parametrize(
    ("runtime", "step", "where"),
    [
        ({"tools": {"curl": {"hosts": ["http://x"]}}}, {}, "hosts"),
        ({"tools": {"remediation": {"actions": ["delete-namespace"]}}}, {}, "actions"),
        ({"tools": {"prometheus": {"url": "file:///etc/passwd"}}}, {}, "url"),
        (
            {"tools": {"scripts": [{"name": "a", "command": ["x"]}] * 2}},
            {},
            "scripts",
        ),
        ({}, {"tools": ["bash"]}, "tools"),
        ({}, {"approvalTimeout": "soon"}, "approvalTimeout"),
    ],
)
def test_bad_tool_settings_are_refused_naming_the_field(
    runtime: dict[str, object], step: dict[str, object], where: str
) -> None:
    spec = {
        "runtime": runtime,
        "steps": [{"name": "look", "type": "agent", "goal": "why", **step}],
    }
    errors = workflows.WorkflowSpecSchema().validate(spec)
    assert where in str(errors), errors
