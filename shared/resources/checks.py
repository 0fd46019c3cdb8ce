"""Rules that span resources: webhook path ownership and references.

Pure functions over normalized specs. The caller supplies how to look things up
(the database in the controller, the loaded set in ``validate``), so the same rules
hold in a cluster and in file mode. A reference problem does not stop a resource
from being stored: the Workflow may arrive a moment after its Source, and the
services handle a missing reference at run time anyway; it is reported in status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.resources.schemas import SINK, SOURCE, WORKFLOW, Resource
from shared.resources.status import Problem

# (kind, namespace, name) -> exists?
Exists = Callable[[str, str, str], bool]
# (namespace, secret name, key) -> None when resolvable, else the reason.
SecretCheck = Callable[[str, str, str], str | None]


def webhook_path(spec: Mapping[str, Any]) -> str | None:
    if spec.get("type") != "webhook":
        return None
    path = (spec.get("config") or {}).get("path")
    return path if isinstance(path, str) else None


def path_holders(resources: Iterable[Resource]) -> dict[str, tuple[str, str]]:
    """Webhook path -> (namespace, name) of the Source that holds it.

    The first in the given order wins; callers pass resources already stored first,
    so a new Source cannot take a path away from one that is serving it.
    """
    holders: dict[str, tuple[str, str]] = {}
    for resource in resources:
        if resource.kind != SOURCE.name:
            continue
        path = webhook_path(resource.spec)
        if path is not None:
            holders.setdefault(path, (resource.namespace, resource.name))
    return holders


def path_conflict(resource: Resource, holders: Mapping[str, tuple[str, str]]) -> Problem | None:
    if resource.kind != SOURCE.name:
        return None
    path = webhook_path(resource.spec)
    holder = holders.get(path) if path is not None else None
    if holder is None or holder == (resource.namespace, resource.name):
        return None
    return Problem(
        "PathConflict",
        f"spec.config.path: {path} is already served by Source {holder[0]}/{holder[1]}.",
    )


def _secret_refs(resource: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    spec = resource.spec
    config = spec.get("config") or {}
    refs: list[tuple[str, Mapping[str, Any] | None]] = []
    if resource.kind == SOURCE.name:
        refs.append(
            (
                "spec.config.authentication.secretRef",
                (config.get("authentication") or {}).get("secretRef"),
            )
        )
    elif resource.kind == WORKFLOW.name:
        llm = (spec.get("runtime") or {}).get("llmConfig") or {}
        refs.append(("spec.runtime.llmConfig.apiKeySecretRef", llm.get("apiKeySecretRef")))
    elif resource.kind == SINK.name:
        refs.append(("spec.config.tokenSecretRef", config.get("tokenSecretRef")))
        refs.append(("spec.config.secretRef", config.get("secretRef")))
    return [(path, ref) for path, ref in refs if ref]


def unresolved(resource: Resource, exists: Exists, secret: SecretCheck) -> list[Problem]:
    """Every reference of ``resource`` that does not resolve, naming the field."""
    problems: list[Problem] = []
    spec = resource.spec
    if resource.kind == SOURCE.name:
        workflow = spec.get("triggerWorkflow")
        if workflow and not exists(WORKFLOW.name, resource.namespace, workflow):
            problems.append(
                Problem(
                    "WorkflowNotFound",
                    f"spec.triggerWorkflow: no Workflow {resource.namespace}/{workflow}.",
                )
            )
    elif resource.kind == WORKFLOW.name:
        for index, sink in enumerate(spec.get("sinks") or []):
            if not exists(SINK.name, resource.namespace, sink):
                problems.append(
                    Problem(
                        "SinkNotFound", f"spec.sinks.{index}: no Sink {resource.namespace}/{sink}."
                    )
                )
    for path, ref in _secret_refs(resource):
        reason = secret(resource.namespace, str(ref["name"]), str(ref["key"]))
        if reason is not None:
            problems.append(Problem("SecretNotFound", f"{path}: {reason}"))
    return problems
