"""Step executors; importing this package registers them in the default registry."""

from __future__ import annotations

from services.engine.steps import agent, cli, conditional, registries

__all__ = ["agent", "cli", "conditional", "registries"]
