"""Every file in examples/ is a valid resource; the `make run` set is what it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.resources import checks, files

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SETS = [EXAMPLES, EXAMPLES / "cluster"]


@pytest.mark.parametrize("folder", SETS, ids=lambda p: p.name)
def test_example_set_is_valid_and_consistent(folder: Path) -> None:
    loaded = files.load_files([folder])
    assert [str(e) for e in loaded.errors] == []
    assert loaded.resources
    names = {(r.kind, r.name) for r in loaded.resources}
    for resource in loaded.resources:
        problems = checks.unresolved(
            resource,
            exists=lambda kind, _ns, name: (kind, name) in names,
            secret=lambda *_: None,
        )
        assert problems == [], resource


def test_every_yaml_file_belongs_to_a_set() -> None:
    all_yaml = {p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml")}
    in_sets = {p for folder in SETS for p in files.yaml_files([folder])}
    assert all_yaml == in_sets


def test_make_run_set() -> None:
    loaded = files.load_files([EXAMPLES])
    by_name = {(r.kind, r.name): r for r in loaded.resources}
    source = by_name[("Source", "alertmanager")]
    config = source.spec["config"]
    assert config["path"] == "/webhook/alertmanager"
    assert config["authentication"]["secretRef"] == {"name": "alertmanager-webhook", "key": "token"}
    assert set(config["filters"]["severity"]) == {"critical", "warning"}
    workflow = by_name[("Workflow", source.spec["triggerWorkflow"])]
    # Runs without a model or a cluster: agent steps use the rule-based investigator.
    assert {step["type"] for step in workflow.spec["steps"]} == {"cli", "agent", "conditional"}
    assert "llmConfig" not in workflow.spec["runtime"]
    token = EXAMPLES / "secrets" / "alertmanager-webhook" / "token"
    assert token.read_text().strip()


def test_cluster_set_covers_the_seed() -> None:
    loaded = files.load_files([EXAMPLES / "cluster"])
    kinds = {(r.kind, r.spec.get("type")) for r in loaded.resources}
    assert {
        ("Source", "webhook"),
        ("Source", "schedule"),
        ("Sink", "slack"),
        ("Sink", "alertmanager"),
    } <= kinds
    triage = next(r for r in loaded.resources if r.name == "alert-triage")
    assert [s["type"] for s in triage.spec["steps"]] == ["cli", "agent", "conditional", "cli"]
    assert set(triage.spec["steps"][1]["tools"]) == {"kubectl", "promql", "curl"}
