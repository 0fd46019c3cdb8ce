"""Step executors; importing this package registers them in the default registry."""

from __future__ import annotations

from services.engine.steps import cli, conditional, registries

__all__ = ["cli", "conditional", "registries"]
