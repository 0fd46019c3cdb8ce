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


OPEN = {"authentication": {"type": "none"}}


def test_no_source_keeps_a_shared_path() -> None:
    """Spellings of one path are one path, and every claimant names the others."""
    first = resource("Source", "first", {"type": "webhook", "config": {"path": "/p", **OPEN}})
    second = resource(
        "Source", "second", {"type": "webhook", "config": {"path": "/p/", **OPEN}}, "ops"
    )
    other = resource("Source", "other", {"type": "webhook", "config": OPEN})
    claims = checks.path_claims([first, second, other])
    assert claims == {
        "/p": [("default", "first"), ("ops", "second")],
        "/webhook/other": [("default", "other")],
    }
    for mine, theirs in ((first, "ops/second"), (second, "default/first")):
        conflict = checks.path_conflict(mine, claims)
        assert conflict is not None
        assert conflict.reason == "PathConflict"
        assert f"Source {theirs}" in conflict.message
    assert checks.path_conflict(other, claims) is None


def test_a_spec_stored_with_a_trailing_slash_still_conflicts() -> None:
    """Rows written before paths were normalized are compared in the canonical form."""
    old = schemas.Resource(
        "Source", "default", "old", {"type": "webhook", "config": {"path": "/webhook/prod/"}}
    )
    new = resource(
        "Source", "new", {"type": "webhook", "config": {"path": "/webhook/prod", **OPEN}}
    )
    conflict = checks.path_conflict(new, checks.path_claims([old, new]))
    assert conflict is not None
    assert "default/old" in conflict.message


def test_a_source_without_authentication_gets_a_warning_condition() -> None:
    source = resource("Source", "am", {"type": "webhook", "config": {"path": "/p", **OPEN}})
    (advisory,) = checks.advisories(source)
    assert advisory.type == "Authenticated"
    assert advisory.problem is not None
    assert advisory.problem.reason == "AuthenticationDisabled"
    assert "/p" in advisory.problem.message
    bearer = resource(
        "Source", "am", {"type": "webhook", "config": {"authentication": {"secretRef": SECRET}}}
    )
    assert [a.problem for a in checks.advisories(bearer)] == [None]
