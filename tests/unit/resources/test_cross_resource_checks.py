"""References between resources and webhook path ownership."""

from __future__ import annotations

from shared.resources import checks, schemas


def resource(kind: str, name: str, spec: dict, namespace: str = "default") -> schemas.Resource:  # type: ignore[type-arg]
    return schemas.Resource(kind, namespace, name, schemas.normalize(kind, name, spec))


SECRET = {"name": "tok", "key": "token"}


def test_missing_workflow_and_secret_are_named() -> None:
    source = resource(
        "Source",
        "am",
        {
            "type": "webhook",
            "triggerWorkflow": "triage",
            "config": {"authentication": {"secretRef": SECRET}},
        },
    )
    problems = checks.unresolved(
        source, exists=lambda *_: False, secret=lambda ns, name, key: f"no secret {ns}/{name}"
    )
    assert [(p.reason, p.message.split(":")[0]) for p in problems] == [
        ("WorkflowNotFound", "spec.triggerWorkflow"),
        ("SecretNotFound", "spec.config.authentication.secretRef"),
    ]
    assert checks.unresolved(source, exists=lambda *_: True, secret=lambda *_: None) == []


def test_lookups_use_the_resource_namespace() -> None:
    workflow = resource(
        "Workflow",
        "wf",
        {"steps": [{"name": "a", "type": "cli", "command": ["x"]}], "sinks": ["chat", "mail"]},
        namespace="ops",
    )
    asked: list[tuple[str, str, str]] = []

    def exists(kind: str, namespace: str, name: str) -> bool:
        asked.append((kind, namespace, name))
        return name == "chat"

    problems = checks.unresolved(workflow, exists=exists, secret=lambda *_: None)
    assert asked == [("Sink", "ops", "chat"), ("Sink", "ops", "mail")]
    assert [(p.reason, p.message) for p in problems] == [
        ("SinkNotFound", "spec.sinks.1: no Sink ops/mail.")
    ]


def test_sink_secrets_are_checked() -> None:
    sink = resource(
        "Sink", "slack", {"type": "slack", "config": {"channel": "#x", "tokenSecretRef": SECRET}}
    )
    seen: list[tuple[str, str, str]] = []
    checks.unresolved(sink, exists=lambda *_: True, secret=lambda *a: seen.append(a))  # type: ignore[func-returns-value]
    assert seen == [("default", "tok", "token")]


def test_first_holder_keeps_a_path() -> None:
    first = resource("Source", "first", {"type": "webhook", "config": {"path": "/p"}})
    second = resource("Source", "second", {"type": "webhook", "config": {"path": "/p"}})
    other = resource("Source", "other", {"type": "webhook"})
    holders = checks.path_holders([first, second, other])
    assert holders == {"/p": ("default", "first"), "/webhook/other": ("default", "other")}
    assert checks.path_conflict(first, holders) is None
    conflict = checks.path_conflict(second, holders)
    assert conflict is not None
    assert conflict.reason == "PathConflict"
    assert "Source default/first" in conflict.message
