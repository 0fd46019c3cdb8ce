"""Security-relevant dependency floors are declared, and what is installed meets them.

Jinja2's sandbox is a security boundary for Workflow templates: versions before
3.1.6 have sandbox escapes (CVE-2024-56326, CVE-2025-27516), and Flask alone would
accept them. Matchers need google-re2 (linear-time RE2, AlertManager's dialect).
"""

from __future__ import annotations

import configparser
import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

SETUP_CFG = Path(__file__).parents[2] / "setup.cfg"


def _requirements() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config["options"]["install_requires"].splitlines()
    wanted = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return {Requirement(line).name.lower(): Requirement(line) for line in wanted}


@pytest.mark.parametrize(("name", "floor"), [("jinja2", "3.1.6"), ("google-re2", "1.1")])
def test_floor_is_declared_and_installed(name: str, floor: str) -> None:
    requirement = _requirements()[name]
    assert requirement.specifier.contains(floor)
    assert not requirement.specifier.contains("3.1.5" if name == "jinja2" else "1.0")
    assert requirement.specifier.contains(importlib.metadata.version(name))
