"""Rules that span resources: webhook path ownership, references, and advisories.

Pure functions over normalized specs. The caller supplies how to look things up
(the database in the controller, the loaded set in ``validate``), so the same rules
hold in a cluster and in file mode. A reference problem does not stop a resource
from being stored: the Workflow may arrive a moment after its Source, and the
services handle a missing reference at run time anyway; it is reported in status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from shared.domain import sources as domain_sources
from shared.resources.schemas import SINK, SOURCE, WORKFLOW, Resource
from shared.resources.status import AUTHENTICATED, Advisory, Problem

# (kind, namespace, name) -> exists?
Exists = Callable[[str, str, str], bool]
# (namespace, secret name, key) -> None when resolvable, else the reason.
SecretCheck = Callable[[str, str, str], str | None]


def webhook_path(resource: Resource) -> str | None:
    """The normalized path a Source serves (None: not a webhook, or no usable path)."""
    if resource.kind != SOURCE.name:
        return None
    try:
        return domain_sources.webhook_path(resource.name, resource.spec)
    except domain_sources.PathError:
        # Only a spec stored before paths were normalized can get here; the
        # schema refuses such a path, so the resource is reported invalid anyway.
        return None


def path_claims(resources: Iterable[Resource]) -> dict[str, list[tuple[str, str]]]:
    """Normalized webhook path -> (namespace, name) of every Source that claims it."""
    claims: dict[str, list[tuple[str, str]]] = {}
    for resource in resources:
        path = webhook_path(resource)
        if path is not None:
            claims.setdefault(path, []).append((resource.namespace, resource.name))
    return claims


def path_conflict(
    resource: Resource, claims: Mapping[str, list[tuple[str, str]]]
) -> Problem | None:
    """A Problem naming the other Sources on ``resource``'s path, if there are any.

    No Source wins a shared path: ingest serves none of them and each is reported
    not ready until the path has one owner again, because which one arrived first
    says nothing about which one the sender meant.
    """
    path = webhook_path(resource)
    if path is None:
        return None
    others = [
        f"{namespace}/{name}"
        for namespace, name in claims.get(path, [])
        if (namespace, name) != (resource.namespace, resource.name)
    ]
    if not others:
        return None
    return Problem(
        "PathConflict",
        f"spec.config.path: {path} is also claimed by Source {', '.join(others)}; "
        "ingest serves neither until one of them changes its path.",
    )


def advisories(resource: Resource) -> list[Advisory]:
    """Conditions worth reporting that do not stop the resource from being ready."""
    if resource.kind != SOURCE.name or resource.spec.get("type") != "webhook":
        return []
    config = resource.spec.get("config") or {}
    auth = config.get("authentication") or {}
    path = config.get("path")
    if auth.get("type") == domain_sources.AUTH_NONE:
        problem: Problem | None = Problem(
            "AuthenticationDisabled",
            f"spec.config.authentication.type is none: anyone who can reach ingest can "
            f"post alerts to {path}.",
        )
    else:
        problem = None
    return [
        Advisory(
            AUTHENTICATED,
            problem,
            "BearerToken",
            "Callers must send the bearer token of spec.config.authentication.secretRef.",
        )
    ]


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
