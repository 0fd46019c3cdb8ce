"""`punchingfist validate -f`: exit status and messages naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.controller import cli

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


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
    assert "1 error(s); 1 resource(s) valid" in out


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
