"""docs/deploy.md lists every PF_ variable, generated from shared/settings.py and current."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import settings, settings_doc
from tests.unit.deploy.deploykit import ROOT

DOC = ROOT / "docs" / "deploy.md"


def test_the_doc_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.settings_doc", "--check", str(DOC)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_every_variable_is_read_by_from_env_and_described() -> None:
    variables = settings_doc.variables()
    names = [v.name for v in variables]
    assert len(names) == len(set(names))
    for variable in variables:
        assert variable.meaning, f"{variable.name}: add a comment above {variable.field}"
        # The name really is read: a bad value for it is refused, naming it.
        if variable.values not in {"text", "path", "comma-separated names"}:
            with pytest.raises(settings.ConfigError, match=variable.name):
                settings.from_env({variable.name: "not-a-valid-value-%"})


def test_every_settings_field_has_a_variable() -> None:
    placed = {(v.group, v.field) for v in settings_doc.variables()}
    defaults = settings.Settings()
    nested = [getattr(defaults, field.name) for field in dataclasses.fields(defaults)]
    groups = [settings.Settings, *(type(v) for v in nested if dataclasses.is_dataclass(v))]
    missing = [
        (group.__name__, field.name)
        for group in groups
        for field in dataclasses.fields(group)
        if not dataclasses.is_dataclass(getattr(group(), field.name))
        and (group.__name__, field.name) not in placed
    ]
    assert missing == [], f"settings without a PF_ variable: {missing}"


def test_defaults_are_the_dataclass_defaults() -> None:
    by_name = {v.name: v for v in settings_doc.variables()}
    assert by_name["PF_INGEST_WORKERS"].default == "2"
    assert by_name["PF_ENGINE_POOL"].values == "prefork, threads, solo"
    assert by_name["PF_CONFIG_DIR"].default == "(unset)"
    assert by_name["PF_KUBERNETES_SECRETS"].default == "false"


def test_write_replaces_only_the_table(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{settings_doc.BEGIN}\nSTALE-TABLE\n{settings_doc.END}\nafter\n")
    assert settings_doc.main(["--check", str(doc)]) == 1
    assert settings_doc.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n")
    assert text.endswith("after\n")
    assert "STALE-TABLE" not in text
    assert "`PF_DATABASE_URL`" in text
    assert settings_doc.main(["--check", str(doc)]) == 0


def test_a_read_that_is_not_a_field_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    source = 'def from_env(env):\n    x = _read(env, "PF_LOST", str, "")\n'
    monkeypatch.setattr(settings_doc.inspect, "getsource", lambda _module: source)
    with pytest.raises(settings_doc.SettingsSourceError, match="PF_LOST"):
        settings_doc.variables()


def test_a_doc_without_markers_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("no table here\n")
    with pytest.raises(settings_doc.SettingsSourceError):
        settings_doc.main(["--check", str(doc)])
    assert os.path.exists(doc)
