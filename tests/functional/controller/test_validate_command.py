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
    assert "2 resource(s) valid" in out


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
