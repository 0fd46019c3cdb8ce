"""Agent tests: recorded scenarios served by the Kubernetes API double, scripted models."""

from __future__ import annotations

import sys
from pathlib import Path

# The eval harness (scenarios and how they are served) is shared with these tests.
sys.path.insert(0, str(Path(__file__).parents[2] / "evals"))
