"""The import contracts in setup.cfg hold: shared imports no service, services are
independent, and the pure modules import no framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    # In a process of its own, as `make lint` runs it: import-linter configures
    # logging with dictConfig, which disables every logger that exists, and tests
    # run after it in this process would no longer see their modules' records.
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
