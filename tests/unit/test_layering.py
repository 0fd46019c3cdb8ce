"""The import contracts in setup.cfg hold: shared imports no service, services are
independent, and the pure modules import no framework."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlinter import cli

    monkeypatch.chdir(ROOT)
    assert cli.lint_imports(config_filename=str(ROOT / "setup.cfg")) == 0
