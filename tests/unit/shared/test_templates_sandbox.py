"""Templates render the context and cannot reach Python internals or the filesystem."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.templates import TemplateError, Templates, from_go_style

CONTEXT: dict[str, Any] = {
    "alert": {"labels": {"pod": "web-1", "app-name": "shop"}, "severity": "critical"},
    "source": {"context": {"cluster": "prod"}},
    "steps": {"look": {"phase": "Succeeded", "output": {"stdout": "ok\n", "restarts": 4}}},
    "env": {"REGION": "eu-1"},
}


@pytest.fixture
def templates() -> Templates:
    return Templates()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ alert.labels.pod }}", "web-1"),
        ("{{ source.context.cluster }}", "prod"),
        ("{{ steps.look.output.stdout | trim }}", "ok"),
        ("{{ env.REGION }}", "eu-1"),
        ("{{ alert.labels['app-name'] }}", "shop"),
        ("{{ .alert.labels.pod }}/{{ .env.REGION }}", "web-1/eu-1"),
        ("no template here", "no template here"),
    ],
)
def test_renders_the_context(templates: Templates, source: str, expected: str) -> None:
    assert templates.render(source, CONTEXT, where="step 'x'") == expected


def test_go_style_keeps_dots_in_strings_and_numbers() -> None:
    assert from_go_style("{{ .a.b ~ '.c' ~ 1.5 }}") == "{{ a.b ~ '.c' ~ 1.5 }}"
    assert from_go_style("plain .text {{ (.x) }}") == "plain .text {{ (x) }}"


def test_missing_field_is_an_error_naming_step_and_expression(templates: Templates) -> None:
    with pytest.raises(TemplateError) as caught:
        templates.render(
            "logs {{ alert.labels.container }}", CONTEXT, where="step 'logs' command[1]"
        )
    message = str(caught.value)
    assert message.startswith(
        "step 'logs' command[1]: template 'logs {{ alert.labels.container }}'"
    )
    assert "has no attribute 'container'" in message


def test_default_filter_makes_a_field_optional(templates: Templates) -> None:
    assert (
        templates.render("{{ alert.labels.container | default('-') }}", CONTEXT, where="x") == "-"
    )


def test_syntax_error_is_reported(templates: Templates) -> None:
    with pytest.raises(TemplateError, match="is not valid"):
        templates.render("{{ alert.labels.pod ", CONTEXT, where="x")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ alert.__class__ }}",
        "{{ range.__self__ }}",
        "{{ alert.labels.update({'pod': 'evil'}) }}",
        "{{ ('a' * 100000000) | length }}",
        "{{ 2 ** 10000000 }}",
    ],
)
def test_the_sandbox_refuses_internals_mutation_and_bombs(
    templates: Templates, source: str
) -> None:
    with pytest.raises(TemplateError):
        templates.render(source, CONTEXT, where="x")
    assert CONTEXT["alert"]["labels"]["pod"] == "web-1"


@pytest.mark.parametrize(
    "source",
    ["{% include '/etc/passwd' %}", "{% import '/etc/passwd' as x %}", "{{ lipsum() }}"],
)
def test_templates_cannot_read_files_or_use_extra_globals(
    templates: Templates, source: str
) -> None:
    with pytest.raises(TemplateError):
        templates.render(source, CONTEXT, where="x")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("alert.severity == 'critical'", True),
        ("steps.look.output.restarts > 3", True),
        ("steps.look.output.restarts | int >= 5", False),
        ("'ok' in steps.look.output.stdout", True),
        ("{{ alert.labels | length == 2 }}", True),
        (".alert.labels.pod.startswith('web') and not .env.REGION == 'us'", True),
    ],
)
def test_expressions_evaluate_beyond_string_comparison(
    templates: Templates, expression: str, expected: bool
) -> None:
    assert templates.evaluate(expression, CONTEXT, where="x") is expected


def test_expression_on_missing_field_is_an_error(templates: Templates) -> None:
    with pytest.raises(TemplateError, match=r"condition: expression 'alert\.missing == 1'"):
        templates.evaluate("alert.missing == 1", CONTEXT, where="step 'c' condition")


def test_go_template_functions_get_a_hint(templates: Templates) -> None:
    with pytest.raises(TemplateError, match="write a Jinja expression"):
        templates.evaluate('eq .alert.severity "critical"', CONTEXT, where="x")
