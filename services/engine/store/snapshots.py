"""Workflow snapshots parsed once per process.

A run's spec snapshot never changes, and all runs of one Workflow version share
the same text: the start (the stored Workflow) and every step (the run's snapshot)
would otherwise validate and build it again (the schema compiles every template:
about 15 ms for the triage example). This module must not read the database: it
is handed the spec's text.
"""

from __future__ import annotations

import functools
import json

from shared.domain import workflows
from shared.resources.schemas import load_workflow

# Parsed Workflow snapshots kept per process.
PARSED_WORKFLOWS = 256


class Snapshots:
    """The Workflow of a spec text, cached (bounded, thread-safe: the threads pool)."""

    def __init__(self, maxsize: int = PARSED_WORKFLOWS) -> None:
        self._parse = functools.lru_cache(maxsize=maxsize)(_parse)

    def parse(self, namespace: str, name: str, spec_text: str) -> workflows.Workflow | None:
        """The Workflow of a spec (a run's snapshot, or the stored Workflow at start).

        Validated by the Workflow schema, as ``validate`` and the controller do:
        ``WorkflowError`` names the field when it no longer validates. The result is
        shared by every run with the same spec, so it must be treated as read-only
        (it is: executors and ``core`` only read it). None for a JSON null (a run
        that was never started).
        """
        return self._parse(namespace, name, spec_text)

    def stored(self, namespace: str, name: str, spec_text: str | None) -> workflows.Workflow:
        """The stored Workflow a run starts from; ``WorkflowError`` when there is none."""
        workflow = self.parse(namespace, name, spec_text) if spec_text else None
        if workflow is None:
            raise workflows.WorkflowError(
                f"Workflow {namespace}/{name} does not exist (it was never loaded or was deleted)"
            )
        return workflow


def _parse(namespace: str, name: str, spec_text: str) -> workflows.Workflow | None:
    spec = json.loads(spec_text)
    if spec is None:
        return None
    return load_workflow(namespace, name, spec)
