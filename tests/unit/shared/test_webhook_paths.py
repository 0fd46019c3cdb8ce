"""normalize_path: the one canonical form every comparison of webhook paths uses."""

from __future__ import annotations

import pytest

from shared.domain.sources import PathError, normalize_path


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("/webhook/prod", "/webhook/prod"),
        ("/webhook/prod/", "/webhook/prod"),
        ("/webhook//prod", "/webhook/prod"),
        ("//webhook///prod//", "/webhook/prod"),
        ("/Webhook/Prod", "/Webhook/Prod"),
        ("/hooks/a.b~c-d_e", "/hooks/a.b~c-d_e"),
        ("/apis/x", "/apis/x"),
        ("/metricsx", "/metricsx"),
    ],
)
def test_spellings_of_one_path_have_one_form(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized


@pytest.mark.parametrize(
    "path",
    [
        "",
        "webhook/prod",
        "/",
        "///",
        "/webhook/../admin",
        "/webhook/./prod",
        "/..",
        "/api",
        "/api/v1/alerts",
        "/healthz/",
        "/readyz",
        "/metrics/x",
        "/" + "a" * 253,
    ],
)
def test_paths_without_a_canonical_form_are_refused(path: str) -> None:
    with pytest.raises(PathError):
        normalize_path(path)


def test_normalizing_twice_changes_nothing() -> None:
    once = normalize_path("//a//b/")
    assert normalize_path(once) == once
