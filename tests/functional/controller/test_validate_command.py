"""`punchingfist validate -f`: exit status and messages naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.controller import cli

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


def test_examples_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "ok  Source default/alertmanager" in out
    assert "3 resource(s) valid" in out


def test_errors_name_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\n"
        "spec:\n  steps:\n    - {name: a, type: cli, command: [echo]}\n"
        "    - {name: b, type: agent}\n"
    )
    assert cli.main(["validate", "-f", str(EXAMPLES / "alertmanager-source.yaml"), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}#1 Workflow wf: spec.steps.1.goal: Missing data for required field." in out
    # The Source's Workflow is not among the files given.
    assert (
        f"{EXAMPLES / 'alertmanager-source.yaml'} Source default/alertmanager: "
        "spec.triggerWorkflow: no Workflow default/triage-basic." in out
    )
    assert "2 error(s); 0 resource(s) valid" in out


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def punchingfist_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "validate", "-f", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_references_resolve_among_the_files_given(tmp_path: Path) -> None:
    source = tmp_path / "source.yaml"
    source.write_text(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Source\nmetadata: {name: am}\n"
        "spec:\n  type: webhook\n  triggerWorkflow: triage\n"
        "  config: {authentication: {secretRef: {name: s, key: k}}}\n"
    )
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Workflow\nmetadata: {name: triage}\n"
        "spec:\n  steps: [{name: a, type: cli, command: [date]}]\n  sinks: [slack]\n"
    )
    alone = punchingfist_validate(source)
    assert alone.returncode == 1
    assert "spec.triggerWorkflow: no Workflow default/triage." in alone.stdout
    together = punchingfist_validate(source, workflow)
    assert together.returncode == 1
    assert "Workflow default/triage: spec.sinks.0: no Sink default/slack." in together.stdout
    assert "triggerWorkflow" not in together.stdout
    sink = tmp_path / "sink.yaml"
    sink.write_text(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Sink\nmetadata: {name: slack}\n"
        "spec: {type: stdout}\n"
    )
    assert punchingfist_validate(source, workflow, sink).returncode == 0


SOURCE = """\
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: %s}
spec:
  type: webhook
  config: %s
"""


def test_a_webhook_without_authentication_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source.yaml"
    source.write_text(SOURCE % ("am", "{path: /hooks/am}"))
    assert cli.main(["validate", "-f", str(source)]) == 1
    out = capsys.readouterr().out
    assert "spec.config.authentication: spec.config.authentication is required" in out
    assert "authentication: {type: none}" in out


def test_no_authentication_said_explicitly_passes_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source.yaml"
    source.write_text(SOURCE % ("am", "{path: /hooks/am, authentication: {type: none}}"))
    assert cli.main(["validate", "-f", str(source)]) == 0
    out = capsys.readouterr().out
    assert "warning  Source default/am" in out
    assert "anyone who can reach ingest can post alerts to /hooks/am" in out
    assert "1 resource(s) valid, 1 warning(s)" in out


def test_two_spellings_of_one_path_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(SOURCE % ("a", "{path: /p, authentication: {type: none}}"))
    (tmp_path / "b.yaml").write_text(SOURCE % ("b", "{path: /p/, authentication: {type: none}}"))
    assert cli.main(["validate", "-f", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "/p is also claimed by Source default/b" in out
    assert "/p is also claimed by Source default/a" in out


def test_a_bad_type_does_not_hide_the_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "source.yaml"
    bad.write_text(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Source\nmetadata: {name: am}\n"
        "spec:\n  type: webhok\n  config:\n    path: 12\n    filters: {severity: critical}\n"
    )
    result = punchingfist_validate(bad)
    assert result.returncode == 1
    out = result.stdout
    assert "spec.type: Must be one of: webhook, schedule, chat." in out
    assert "spec.config: Checked as type 'webhook', the nearest to 'webhok'." in out
    assert "spec.config.path: Not a valid string." in out
    assert "spec.config.filters.severity: Not a valid list." in out
    assert "spec.config.authentication: spec.config.authentication is required" in out


def test_entry_errors_name_the_entry_not_its_value(tmp_path: Path) -> None:
    bad = tmp_path / "source.yaml"
    bad.write_text(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Source\nmetadata: {name: am}\n"
        "spec:\n  type: webhook\n  config:\n    authentication: {type: none}\n"
        "    filters: {severity: critical, 'bad label': [x]}\n"
    )
    out = punchingfist_validate(bad).stdout
    assert f"{bad}#1 Source am: spec.config.filters.severity: Not a valid list." in out
    assert "spec.config.filters.bad label: Bad key:" in out
    assert ".value:" not in out
    assert ".key:" not in out


@pytest.mark.parametrize("content", ["", "---\n# nothing here\n", "---\n---\n"])
def test_a_file_without_resources_is_an_error(tmp_path: Path, content: str) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(content)
    result = punchingfist_validate(empty)
    assert result.returncode == 1
    assert f"no resources found in {empty}" in result.stderr
    assert "resource(s) valid" not in result.stdout
