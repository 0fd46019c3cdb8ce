"""What a template reads, from its syntax tree: steps, dashed step names, free names."""

from __future__ import annotations

import pytest

from shared.domain import references
from shared.domain.templates import TemplateError

KNOWN = ["look", "apply-fix", "check-2", "later"]


def problems(
    source: str, *, earlier: list[str] | None = None, expression: bool = False
) -> list[str]:
    found = references.of_expression(source) if expression else references.of_template(source)
    return references.problems(
        found, earlier=earlier or ["look", "apply-fix", "check-2"], known=KNOWN
    )


def test_steps_read_by_attribute_and_by_item() -> None:
    found = references.of_template("{{ steps.look.output.stdout }} {{ steps['apply-fix'].phase }}")
    assert found.steps == {"look", "apply-fix"}
    assert found.names == {"steps"}


def test_method_calls_and_computed_items_are_not_step_names() -> None:
    found = references.of_template(
        "{% for n, s in steps.items() %}{{ steps[n].phase }}{% endfor %}"
    )
    assert found.steps == frozenset()
    assert problems("{% for n, s in steps.items() %}{{ s.phase }}{% endfor %}") == []


def test_a_dashed_name_written_with_a_dot_is_refused_with_the_fix() -> None:
    assert problems("{{ steps.apply-fix.phase == 'Succeeded' }}") == [
        "steps.apply-fix reads as steps.apply minus fix: write steps['apply-fix'] "
        "for a step name with '-'."
    ]
    assert problems("steps.check-2.output.ok", expression=True) == [
        "steps.check-2 reads as steps.check minus 2: write steps['check-2'] "
        "for a step name with '-'."
    ]
    assert problems("{{ steps['apply-fix'].phase == 'Succeeded' }}") == []


def test_only_earlier_steps_can_be_read() -> None:
    assert problems("{{ steps.later.output }}") == [
        "Step 'later' does not run before this one: a step can only read the results "
        "of the steps before it."
    ]
    assert problems("{{ steps.zzz.output.stdout }}") == [
        "No step named 'zzz' in this Workflow (steps.zzz)."
    ]
    # Outputs see every step.
    assert problems("{{ steps.later.output }}", earlier=KNOWN) == []


def test_names_outside_the_run_context_are_refused() -> None:
    assert problems("{{ alrt.labels.pod }}") == [
        "'alrt' is not in the run context (it holds alert, env, run, schedule, source, steps)."
    ]
    ok = "{{ .alert.labels.pod }} {{ source.context.x }} {{ env.A }} {{ run.id }} {{ range(3) }}"
    assert problems(ok) == []
    assert (
        problems("{% set x = 1 %}{{ x }}{% for y in [1] %}{{ y }}{{ loop.index }}{% endfor %}")
        == []
    )


@pytest.mark.parametrize(
    ("source", "expression", "message"),
    [
        ("alert.labels.severity ==", True, "expression 'alert.labels.severity ==' is not valid"),
        ("{{ steps.zzz.output.stdout", False, "template '{{ steps.zzz.output.stdout' is not valid"),
        ("{{ alert | no_such_filter }}", False, "No filter named 'no_such_filter'"),
        ("alert is no_such_test", True, "No test named 'no_such_test'"),
    ],
)
def test_what_does_not_compile_raises(source: str, expression: bool, message: str) -> None:
    analyse = references.of_expression if expression else references.of_template
    with pytest.raises(TemplateError, match=message):
        analyse(source)
