"""`punchingfist validate` and the engine accept and refuse exactly the same Workflows.

Every Workflow of examples/ and examples/cluster/, and a set of Workflows that used
to validate and then fail every run, go through both: the real command line (a
subprocess, as a user runs it) and the engine's own start path (``Store.start`` on a
run of a Workflow stored as-is in the database). A Workflow refused by one and not
the other fails this test, and both must name the same field.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from enginekit import Harness, start_run

from services.engine.store import Store
from shared.domain.runs import RunPhase
from shared.domain.templates import Templates
from shared.resources import files
from tests.support.workers import REPO

EXAMPLE_SETS = [REPO / "examples", REPO / "examples" / "cluster"]


def cli(name: str, *command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "cli", "command": list(command or ["true"]), **extra}


# name -> (spec, the field both must name; None when both must accept it)
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "backward-branch": (
        {
            "steps": [
                cli("first"),
                {
                    "name": "check",
                    "type": "conditional",
                    "condition": "true",
                    "then": {"run": ["first"]},
                },
            ]
        },
        "spec.steps.1.then.run.0",
    ),
    "condition-syntax": (
        {"steps": [{"name": "c", "type": "conditional", "condition": "alert.labels.severity =="}]},
        "spec.steps.0.condition",
    ),
    "unclosed-output": (
        {"steps": [cli("a")], "outputs": [{"name": "o", "value": "{{ steps.zzz.output.stdout"}]},
        "spec.outputs.0.value",
    ),
    "unknown-step": (
        {"steps": [cli("a", "echo", "{{ steps.zzz.output.stdout }}")]},
        "spec.steps.0.command.1",
    ),
    "later-step": (
        {"steps": [cli("a", env={"X": "{{ steps.b.phase }}"}), cli("b")]},
        "spec.steps.0.env.X",
    ),
    "dashed-step-name": (
        {
            "steps": [cli("apply-fix")],
            "outputs": [{"name": "ok", "value": "{{ steps.apply-fix.phase == 'Succeeded' }}"}],
        },
        "spec.outputs.0.value",
    ),
    "not-in-context": (
        {"steps": [cli("a", "echo", "{{ alrt.labels.pod }}")]},
        "spec.steps.0.command.1",
    ),
    "two-timeouts": (
        {"steps": [cli("a", timeout="5m", timeoutSeconds=3)]},
        "spec.steps.0.timeoutSeconds",
    ),
    "bad-duration": ({"steps": [cli("a", timeout="5 minutes")]}, "spec.steps.0.timeout"),
    "unknown-type": ({"steps": [{"name": "a", "type": "teleport"}]}, "spec.steps.0.type"),
    "duplicate-step": ({"steps": [cli("a"), cli("a")]}, "spec.steps.1.name"),
    "go-duration": ({"steps": [cli("a", timeout="1h30m")]}, None),
    "dashed-with-brackets": (
        {
            "steps": [cli("apply-fix"), cli("after", "echo", "{{ steps['apply-fix'].phase }}")],
            "outputs": [{"name": "ok", "value": "{{ steps['apply-fix'].phase == 'Succeeded' }}"}],
        },
        None,
    ),
    "no-caps": ({"steps": [cli("a")], "limits": {"maxConcurrentRuns": 0}}, None),
}


def document(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": spec,
    }


def example_workflows() -> dict[str, dict[str, Any]]:
    found = {}
    for path in files.yaml_files(EXAMPLE_SETS):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Workflow":
                found[doc["metadata"]["name"]] = doc["spec"]
    return found


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "validate", "-f", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def cli_verdicts(tmp_path: Path) -> dict[str, str | None]:
    """Workflow name -> None (ok) or what `punchingfist validate` said about it."""
    verdicts: dict[str, str | None] = {}
    for folder in EXAMPLE_SETS:
        result = validate(folder)
        for name in example_workflows():
            if f"Workflow default/{name} " in result.stdout:
                verdicts[name] = (
                    None if f"ok  Workflow default/{name} " in result.stdout else (result.stdout)
                )
    paths = []
    for name, (spec, _) in CASES.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document(name, spec)))
        paths.append(path)
    result = validate(*paths)
    for name, path in zip(CASES, paths, strict=True):
        said = [line for line in result.stdout.splitlines() if line.startswith(f"{path}#")]
        verdicts[name] = "\n".join(said) or None
    return verdicts


def engine_verdicts(harness: Harness) -> dict[str, str | None]:
    """Workflow name -> None (the run started) or the error the run failed with."""
    store = Store(Templates(), outbox_lease_seconds=10)
    specs = {**example_workflows(), **{name: spec for name, (spec, _) in CASES.items()}}
    verdicts: dict[str, str | None] = {}
    for name, spec in specs.items():
        # Stored as written: the engine must not trust whoever wrote the database.
        harness.put_workflow(spec, name=name)
        run_id = harness.add_run(name)
        with harness.sessions.begin() as session:
            started = store.start(session, run_id, dt.datetime.now(dt.UTC))
        assert started is not None
        if started.phase is RunPhase.FAILED:
            verdicts[name] = harness.run(run_id).error
        else:
            assert started.phase is RunPhase.RUNNING, name
            verdicts[name] = None
    return verdicts


def test_validate_and_the_engine_agree_on_every_workflow(harness: Harness, tmp_path: Path) -> None:
    by_cli = cli_verdicts(tmp_path)
    by_engine = engine_verdicts(harness)
    assert set(by_cli) == set(by_engine) == set(example_workflows()) | set(CASES)
    refused_by_cli = {name for name, said in by_cli.items() if said}
    refused_by_engine = {name for name, said in by_engine.items() if said}
    assert refused_by_cli == refused_by_engine
    for name, (_, field) in CASES.items():
        if field is None:
            assert by_cli[name] is None, by_cli[name]
        else:
            assert f": {field}: " in (by_cli[name] or ""), (name, by_cli[name])
            assert f": {field}: " in (by_engine[name] or ""), (name, by_engine[name])
    # Every shipped Workflow validates (and so starts).
    assert refused_by_cli.isdisjoint(example_workflows())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_make_run_workflow_runs_through_the_engine(
    harness: Harness, inproc: Celery, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A laptop without a cluster: no in-cluster environment, no kubeconfig.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    spec = example_workflows()["triage-basic"]
    harness.put_workflow(spec, name="triage-basic")
    run_id = harness.add_run(
        "triage-basic",
        labels={"alertname": "Down", "severity": "warning", "namespace": "shop", "pod": "web-1"},
    )
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Succeeded", run.error
    steps = harness.steps(run_id)
    assert [(s.name, s.phase) for s in steps] == [
        ("record", "Succeeded"),
        ("investigate", "Succeeded"),
        ("is-critical", "Succeeded"),
        ("escalate", "Succeeded"),
    ]
    assert run.outputs["received"].startswith(str(dt.datetime.now(dt.UTC).year))
    # The investigation could check nothing, says so, and asks for a human: the
    # conditional reads its output and runs the escalation of a mere warning.
    result = steps[1].output
    assert result["mode"] == "rules"
    assert result["category"] == "unknown"
    assert result["escalate"] is True
    assert any("no Kubernetes cluster" in text for text in result["unchecked"]), result
    assert result["toolCalls"][0]["tool"] == "kubectl"
    assert result["toolCalls"][0]["status"] == "error"
    assert len(result["toolCalls"]) == 1  # kubectl is not called again
    assert result["goal"] == "Find out why Down fired."
    assert run.outputs["category"] == "unknown"
    assert steps[3].output["stdout"].startswith("a human should look now:")
