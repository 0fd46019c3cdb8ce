"""Source specs: normalized form, defaults, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.sources import Source
from shared.errors import ValidationError
from shared.resources import schemas


def normalize(spec: dict[str, Any], name: str = "am") -> dict[str, Any]:
    return schemas.normalize("Source", name, spec)


def errors(spec: dict[str, Any]) -> dict[str, object]:
    with pytest.raises(ValidationError) as info:
        normalize(spec)
    return info.value.messages


OPEN = {"authentication": {"type": "none"}}


def test_webhook_gets_path_and_rate_limit_defaults() -> None:
    spec = normalize(
        {"type": "webhook", "config": OPEN, "triggerWorkflow": "triage"}, name="alertmanager"
    )
    assert spec == {
        "type": "webhook",
        "config": {
            "path": "/webhook/alertmanager",
            "filters": {},
            "matchers": [],
            "authentication": {"type": "none"},
            "rateLimit": {"maxWorkflowStarts": 100, "windowSeconds": 60},
        },
        "triggerWorkflow": "triage",
        "context": {},
    }


def test_normalized_spec_is_what_ingest_reads() -> None:
    spec = normalize(
        {
            "type": "webhook",
            "config": {
                "path": "/hooks/am",
                "filters": {"severity": ["critical", "warning"]},
                "matchers": ['namespace=~"prod|staging"'],
                "authentication": {"secretRef": {"name": "am-token", "key": "token"}},
                "rateLimit": {"maxWorkflowStarts": 5},
            },
            "triggerWorkflow": "triage",
            "context": {"team": {"name": "sre"}},
        }
    )
    source = Source.from_spec("default", "am", spec)
    assert source.path == "/hooks/am"
    assert source.bearer_secret is not None
    assert (source.bearer_secret.name, source.bearer_secret.key) == ("am-token", "token")
    assert spec["config"]["authentication"]["type"] == "bearer"
    assert source.start_limit.max_starts == 5
    assert source.start_limit.window_seconds == 60
    assert source.alert_filter.admits({"severity": "critical", "namespace": "prod"})
    assert not source.alert_filter.admits({"severity": "info", "namespace": "prod"})
    assert not source.alert_filter.admits({"severity": "critical", "namespace": "dev"})
    assert source.context == {"team": {"name": "sre"}}


def test_normalizing_twice_changes_nothing() -> None:
    once = normalize({"type": "webhook", "config": {"matchers": ["a=b"], **OPEN}})
    assert normalize(once) == once


def test_bad_matcher_names_its_index() -> None:
    messages = errors({"type": "webhook", "config": {"matchers": ["ok=1", 'job=~"(("'], **OPEN}})
    assert list(messages) == ["spec.config.matchers.1"]
    assert "bad regular expression" in str(messages["spec.config.matchers.1"])


@pytest.mark.parametrize("regex", [r"(a)\\1", "(?=prod)", "a++"])
def test_matchers_re2_cannot_compile_are_refused(regex: str) -> None:
    # Python's re accepts these; AlertManager (and RE2) do not.
    messages = errors({"type": "webhook", "config": {"matchers": [f'job=~"{regex}"']}})
    assert "RE2 syntax" in str(messages["spec.config.matchers.0"])


def test_schedule_needs_valid_cron_and_timezone() -> None:
    assert errors({"type": "schedule"}) == {
        "spec.config.cron": ["Missing data for required field."]
    }
    messages = errors(
        {"type": "schedule", "config": {"cron": "every day", "timezone": "Mars/Base"}}
    )
    assert set(messages) == {"spec.config.cron", "spec.config.timezone"}
    spec = normalize({"type": "schedule", "config": {"cron": "0 7 * * 1-5"}})
    assert spec["config"] == {"cron": "0 7 * * 1-5", "timezone": "UTC"}
    assert "path" not in spec["config"]


def test_chat_is_refused_with_a_reason() -> None:
    messages = errors({"type": "chat"})
    assert "reserved" in str(messages["spec.type"])


def test_fields_of_another_type_are_refused() -> None:
    messages = errors({"type": "schedule", "config": {"cron": "* * * * *", "path": "/x"}})
    assert messages == {"spec.config.path": ["Unknown field."]}


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "webhook", "typo": 1}, "spec.typo"),
        ({"type": "http"}, "spec.type"),
        ({}, "spec.type"),
        ({"type": "webhook", "config": {"path": "no-slash"}}, "spec.config.path"),
        ({"type": "webhook", "config": {"filters": {"sev-erity": ["x"]}}}, "spec.config.filters"),
        (
            {"type": "webhook", "config": {"authentication": {}}},
            "spec.config.authentication.secretRef",
        ),
        (
            {
                "type": "webhook",
                "config": {
                    "authentication": {"type": "basic", "secretRef": {"name": "a", "key": "b"}}
                },
            },
            "spec.config.authentication.type",
        ),
        (
            {"type": "webhook", "config": {"rateLimit": {"windowSeconds": 0}}},
            "spec.config.rateLimit.windowSeconds",
        ),
        ({"type": "webhook", "triggerWorkflow": "Not_A_Name"}, "spec.triggerWorkflow"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], path: str) -> None:
    messages = errors(spec)
    assert any(key == path or key.startswith(path + ".") for key in messages), messages


def test_a_webhook_without_authentication_is_refused_with_the_fix() -> None:
    messages = errors({"type": "webhook", "config": {"path": "/hooks/am"}})
    assert list(messages) == ["spec.config.authentication"]
    assert "authentication: {type: none}" in str(messages["spec.config.authentication"])


@pytest.mark.parametrize(
    ("authentication", "problem"),
    [
        ({"type": "none", "secretRef": {"name": "a", "key": "b"}}, "takes no secretRef"),
        ({"type": "bearer"}, "Missing data"),
        ({}, "Missing data"),
    ],
)
def test_secret_ref_goes_with_bearer_only(authentication: dict[str, Any], problem: str) -> None:
    messages = errors({"type": "webhook", "config": {"authentication": authentication}})
    assert problem in str(messages["spec.config.authentication.secretRef"])


def test_no_authentication_is_stored_as_said() -> None:
    spec = normalize({"type": "webhook", "config": OPEN})
    assert spec["config"]["authentication"] == {"type": "none"}
    assert Source.from_spec("default", "am", spec).bearer_secret is None


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("/webhook/prod/", "/webhook/prod"),
        ("/webhook//prod", "/webhook/prod"),
        ("//webhook/prod//", "/webhook/prod"),
        ("/Webhook/Prod", "/Webhook/Prod"),
    ],
)
def test_paths_are_stored_in_their_canonical_form(written: str, stored: str) -> None:
    spec = normalize({"type": "webhook", "config": {"path": written, **OPEN}})
    assert spec["config"]["path"] == stored


@pytest.mark.parametrize(
    "path",
    ["/", "//", "/webhook/../api", "/webhook/./prod", "/api/v1/alerts", "/metrics", "/a%2Fb"],
)
def test_paths_without_a_canonical_form_are_refused(path: str) -> None:
    messages = errors({"type": "webhook", "config": {"path": path, **OPEN}})
    assert list(messages) == ["spec.config.path"]
