"""`punchingfist`: every deployable has its command; bad settings exit 2 naming the variable."""

from __future__ import annotations

import pytest

from services import cli


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "run",
        "migrate",
        "ingest",
        "engine",
        "scheduler",
        "controller",
        "validate",
        "notifier",
    ):
        assert f"    {command}" in out


def test_bad_setting_exits_2_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PF_INGEST_WORKERS", "many")
    assert cli.main(["migrate"]) == 2
    assert "PF_INGEST_WORKERS='many'" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["frobnicate"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
