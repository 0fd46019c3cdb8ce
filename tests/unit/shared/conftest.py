"""Fixtures for the pure ``shared`` modules: captured AlertManager payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ALERTMANAGER_FIXTURES = Path(__file__).parents[2] / "fixtures" / "alertmanager"


@pytest.fixture
def alertmanager_payload() -> Callable[[str], dict[str, Any]]:
    """Load a captured AlertManager 0.25 webhook body by file name (a fresh copy each call)."""

    def load(name: str) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads((ALERTMANAGER_FIXTURES / name).read_text())
        return payload

    return load
