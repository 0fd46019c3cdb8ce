"""The controller reports a Workflow the engine could not run as not ready, naming the
field, and keeps it out of the database; references report through ``Resolved``.

Both controller modes (kopf and ``--config-dir``) judge through ``Reconciler.apply``;
these go through it with a real database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.controller.reconciler import Reconciler
from services.controller.secrets import folder_check
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings


@pytest.fixture
def reconciler(database_url: str, tmp_path: Path) -> Iterator[Reconciler]:
    engine = make_engine(DatabaseSettings(url=database_url))
    yield Reconciler(make_session_factory(engine), folder_check(tmp_path))
    engine.dispose()


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {
                "steps": [
                    {"name": "first", "type": "cli", "command": ["true"]},
                    {
                        "name": "check",
                        "type": "conditional",
                        "condition": "true",
                        "then": {"run": ["first"]},
                    },
                ]
            },
            "spec.steps.1.then.run.0: 'first' is not a step after 'check'",
        ),
        (
            {
                "steps": [{"name": "apply-fix", "type": "cli", "command": ["true"]}],
                "outputs": [{"name": "ok", "value": "{{ steps.apply-fix.phase }}"}],
            },
            "spec.outputs.0.value: steps.apply-fix reads as steps.apply minus fix",
        ),
    ],
)
def test_a_workflow_that_cannot_run_is_not_ready(
    reconciler: Reconciler, spec: dict[str, Any], field: str
) -> None:
    outcome = reconciler.apply("Workflow", "default", "wf", spec, generation=1, origin="test")
    assert outcome.ready is False
    valid = condition(outcome.status, "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert field in valid["message"]
    assert not outcome.written
    assert [r.name for r in reconciler.stored()] == []


def test_a_source_naming_a_missing_workflow_is_not_ready_until_it_exists(
    reconciler: Reconciler, tmp_path: Path
) -> None:
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "token").write_text("t")
    source = {
        "type": "webhook",
        "triggerWorkflow": "triage",
        "config": {"authentication": {"secretRef": {"name": "hook", "key": "token"}}},
    }
    outcome = reconciler.apply("Source", "default", "am", source, generation=1, origin="test")
    resolved = condition(outcome.status, "Resolved")
    assert (outcome.ready, resolved["reason"]) == (False, "WorkflowNotFound")
    assert resolved["message"] == "spec.triggerWorkflow: no Workflow default/triage."
    workflow = {"steps": [{"name": "a", "type": "cli", "command": ["true"]}]}
    assert reconciler.apply(
        "Workflow", "default", "triage", workflow, generation=1, origin="t"
    ).ready
    again = reconciler.apply("Source", "default", "am", source, generation=1, origin="test")
    assert again.ready is True


def _slack(**config: Any) -> dict[str, Any]:
    return {
        "type": "slack",
        "config": {"channel": "#incidents", "tokenSecretRef": {"name": "slack", "key": "token"}}
        | config,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            _slack(apiUrl="http://127.0.0.1:9091/api"),
            "spec.config.apiUrl: 'http://127.0.0.1:9091/api' must end with / (such as "
            "https://slack.com/api/): the Web API method name is appended to it.",
        ),
        (
            {"type": "webhook", "config": {"url": "https://bot:hunter2@hooks.example/in"}},
            "spec.config.url: credentials in the URL; put them in a Secret (secretRef).",
        ),
        (
            {"type": "alertmanager", "config": {"url": "http://am.example:0"}},
            "spec.config.url: port 0 cannot be connected to.",
        ),
    ],
)
def test_a_sink_whose_type_cannot_deliver_is_not_ready(
    reconciler: Reconciler, tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "token").write_text("xoxb-1")
    outcome = reconciler.apply("Sink", "default", "out", spec, generation=1, origin="test")
    deliverable = condition(outcome.status, "Deliverable")
    assert (outcome.ready, deliverable["status"]) == (False, "False")
    assert (deliverable["reason"], deliverable["message"]) == ("CannotDeliver", message)
    assert condition(outcome.status, "Ready")["message"] == message


def test_a_sink_is_ready_when_its_secret_reads_and_its_urls_are_well_formed(
    reconciler: Reconciler, tmp_path: Path
) -> None:
    spec = _slack(apiUrl="http://127.0.0.1:9091/api/")
    missing = reconciler.apply("Sink", "default", "out", spec, generation=1, origin="test")
    resolved = condition(missing.status, "Resolved")
    assert (missing.ready, resolved["reason"]) == (False, "SecretNotFound")
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "token").write_text("  \n")
    empty = reconciler.apply("Sink", "default", "out", spec, generation=1, origin="test")
    assert empty.ready is False
    assert "is empty" in condition(empty.status, "Resolved")["message"]
    (tmp_path / "slack" / "token").write_text("xoxb-1")
    ready = reconciler.apply("Sink", "default", "out", spec, generation=1, origin="test")
    assert ready.ready is True
    assert condition(ready.status, "Deliverable")["status"] == "True"
    # Other kinds have no such condition.
    workflow = {"steps": [{"name": "a", "type": "cli", "command": ["true"]}]}
    other = reconciler.apply("Workflow", "default", "wf", workflow, generation=1, origin="t")
    assert "Deliverable" not in [c["type"] for c in other.status["conditions"]]
