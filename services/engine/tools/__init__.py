"""Agent tools; importing this package registers them in the default registry.

The Kubernetes client is imported only when a tool first talks to the API (the
engine keeps its import time low when no cluster is configured).
"""

from __future__ import annotations

from services.engine.tools import curl, kubectl, promql, registries, remediate, script

__all__ = ["curl", "kubectl", "promql", "registries", "remediate", "script"]
