"""Source.from_spec: the defaults a stored Source spec is read with."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain import sources
from shared.domain.matchers import MatcherError
from shared.domain.sources import SecretRef, Source, StartLimit

OPEN = {"type": "none"}


def _webhook(**config: Any) -> dict[str, Any]:
    config.setdefault("authentication", OPEN)
    return {"type": "webhook", "config": config, "triggerWorkflow": "triage"}


class TestPath:
    @pytest.mark.parametrize(
        "spec",
        [
            _webhook(),
            {"type": "webhook", "config": {"authentication": OPEN}},
            {"config": {"authentication": OPEN}},
        ],
    )
    def test_webhook_defaults_to_its_name(self, spec: dict[str, Any]) -> None:
        assert (
            Source.from_spec("ops", "alertmanager-prod", spec).path == "/webhook/alertmanager-prod"
        )

    @pytest.mark.parametrize("spec", [_webhook(path=""), _webhook(path=None)])
    def test_empty_path_means_default(self, spec: dict[str, Any]) -> None:
        assert Source.from_spec("ops", "am", spec).path == "/webhook/am"

    def test_explicit_path_wins(self) -> None:
        assert Source.from_spec("ops", "am", _webhook(path="/hooks/am")).path == "/hooks/am"

    def test_other_types_serve_no_path(self) -> None:
        spec = {"type": "schedule", "config": {"cron": "*/5 * * * *"}}
        source = Source.from_spec("ops", "nightly", spec)
        assert (source.type, source.path) == ("schedule", None)

    def test_type_defaults_to_webhook(self) -> None:
        assert Source.from_spec("ops", "am", {"config": {"authentication": OPEN}}).type == "webhook"

    @pytest.mark.parametrize(
        ("path", "normalized"),
        [("/hooks/am/", "/hooks/am"), ("/hooks//am", "/hooks/am"), ("//hooks/am//", "/hooks/am")],
    )
    def test_stored_paths_are_read_in_canonical_form(self, path: str, normalized: str) -> None:
        assert Source.from_spec("ops", "am", _webhook(path=path)).path == normalized


class TestRateLimit:
    @pytest.mark.parametrize("config", [{}, {"rateLimit": None}, {"rateLimit": {}}])
    def test_defaults(self, config: dict[str, Any]) -> None:
        limit = Source.from_spec("ops", "am", _webhook(**config)).start_limit
        assert limit == StartLimit(
            sources.DEFAULT_MAX_WORKFLOW_STARTS, sources.DEFAULT_WINDOW_SECONDS
        )
        assert limit == StartLimit()

    @pytest.mark.parametrize(
        ("rate_limit", "expected"),
        [
            ({"maxWorkflowStarts": 5}, (5, sources.DEFAULT_WINDOW_SECONDS)),
            ({"windowSeconds": 300}, (sources.DEFAULT_MAX_WORKFLOW_STARTS, 300)),
            ({"maxWorkflowStarts": 1, "windowSeconds": 1}, (1, 1)),
        ],
    )
    def test_each_field_overrides_alone(
        self, rate_limit: dict[str, int], expected: tuple[int, int]
    ) -> None:
        limit = Source.from_spec("ops", "am", _webhook(rateLimit=rate_limit)).start_limit
        assert (limit.max_starts, limit.window_seconds) == expected


class TestAuthentication:
    def test_bearer_secret(self) -> None:
        auth = {"type": "bearer", "secretRef": {"name": "am-token", "key": "token"}}
        source = Source.from_spec("ops", "am", _webhook(authentication=auth))
        assert source.bearer_secret == SecretRef("am-token", "token")

    def test_type_defaults_to_bearer(self) -> None:
        auth = {"secretRef": {"name": "am-token", "key": "token"}}
        source = Source.from_spec("ops", "am", _webhook(authentication=auth))
        assert source.bearer_secret == SecretRef("am-token", "token")

    def test_none_must_be_said(self) -> None:
        assert Source.from_spec("ops", "am", _webhook(authentication=OPEN)).bearer_secret is None

    @pytest.mark.parametrize(
        "spec",
        [
            {"type": "webhook", "config": {}},
            {"type": "webhook"},
            {},
            {"type": "webhook", "config": {"authentication": None}},
            {"type": "webhook", "config": {"authentication": {}}},
            _webhook(authentication={"type": "mtls", "secretRef": {"name": "n", "key": "k"}}),
        ],
    )
    def test_a_webhook_that_does_not_say_is_refused(self, spec: dict[str, Any]) -> None:
        with pytest.raises(sources.SourceError):
            Source.from_spec("ops", "am", spec)

    def test_schedules_need_no_authentication(self) -> None:
        spec = {"type": "schedule", "config": {"cron": "* * * * *"}}
        assert Source.from_spec("ops", "nightly", spec).bearer_secret is None


class TestFilterAndContext:
    def test_builds_filters_and_matchers(self) -> None:
        config = {"filters": {"severity": ["critical"]}, "matchers": ['namespace=~"prod|staging"']}
        alert_filter = Source.from_spec("ops", "am", _webhook(**config)).alert_filter
        assert alert_filter.admits({"severity": "critical", "namespace": "staging"})
        assert not alert_filter.admits({"severity": "critical", "namespace": "production"})
        assert not alert_filter.admits({"severity": "warning", "namespace": "prod"})

    def test_no_filter_admits_everything(self) -> None:
        alert_filter = Source.from_spec("ops", "am", _webhook()).alert_filter
        assert alert_filter.admits({})
        assert alert_filter.admits({"severity": "info"})

    def test_bad_matcher_is_not_swallowed(self) -> None:
        with pytest.raises(MatcherError, match="namespace=~"):
            Source.from_spec("ops", "am", _webhook(matchers=["namespace=~(prod"]))

    def test_identity_workflow_and_context(self) -> None:
        spec = {**_webhook(), "context": {"team": "sre", "tier": 1}}
        source = Source.from_spec("ops", "am", spec)
        assert (source.namespace, source.name) == ("ops", "am")
        assert source.trigger_workflow == "triage"
        assert source.context == {"team": "sre", "tier": 1}

    @pytest.mark.parametrize("spec", [{}, {"context": None}])
    def test_missing_workflow_and_context(self, spec: dict[str, Any]) -> None:
        source = Source.from_spec("ops", "am", {**spec, "config": {"authentication": OPEN}})
        assert source.trigger_workflow is None
        assert source.context == {}
