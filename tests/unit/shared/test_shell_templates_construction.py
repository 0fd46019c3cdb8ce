"""Shell templates: where a ``{{ }}`` may stand, and the script that is built instead.

Pure: the lexer and the construction only (``shared.domain.shellscripts``). That the
built script keeps payloads as data when a real shell runs it is shown by
``tests/functional/engine/test_alert_text_never_becomes_a_command.py``.
"""

from __future__ import annotations

import pytest

from shared.domain import shellscripts
from shared.domain.shellscripts import ShellTemplateError, construct


def built(source: str) -> tuple[str, list[tuple[str, str, bool]]]:
    script = construct(source)
    return script.script, [
        (p.expression.strip(), p.variable, p.starts_word) for p in script.placeholders
    ]


# -- what is built ----------------------------------------------------------------


def test_a_bare_value_becomes_a_quoted_variable_reference() -> None:
    assert built("kubectl logs {{ alert.labels.pod }} | tail") == (
        'kubectl logs "${PF_T1}" | tail',
        [("alert.labels.pod", "PF_T1", True)],
    )


def test_inside_double_quotes_the_reference_is_unquoted() -> None:
    assert built('echo "pod {{ alert.labels.pod }} in {{ ns }}"') == (
        'echo "pod ${PF_T1} in ${PF_T2}"',
        [("alert.labels.pod", "PF_T1", False), ("ns", "PF_T2", False)],
    )


def test_the_script_holds_no_value_and_no_expression() -> None:
    script = construct("echo {{ alert.labels.pod | upper }} \"{{ 'x' ~ y }}\"").script
    assert "alert" not in script
    assert "{{" not in script
    assert script == 'echo "${PF_T1}" "${PF_T2}"'


def test_command_substitution_starts_a_new_quoting_context() -> None:
    assert built('echo "$(kubectl get pod {{ p }} -o name)" $(echo "{{ q }}")') == (
        'echo "$(kubectl get pod "${PF_T1}" -o name)" $(echo "${PF_T2}")',
        [("p", "PF_T1", True), ("q", "PF_T2", True)],
    )


def test_a_script_without_templates_is_left_alone() -> None:
    source = "echo 'a {b}' \"$HOME\" `date` # {x}"
    assert construct(source) == shellscripts.ShellScript(source, ())


def test_jinja_comments_go_and_whitespace_control_applies() -> None:
    assert built("echo {# note #}{{- x -}}  y") == ('echo"${PF_T1}"y', [("x", "PF_T1", False)])


def test_a_literal_go_template_is_written_as_a_constant_value() -> None:
    assert built("kubectl get pod -o go-template={{ '{{.metadata.name}}' }}") == (
        'kubectl get pod -o go-template="${PF_T1}"',
        [("'{{.metadata.name}}'", "PF_T1", False)],
    )


def test_tag_ends_follow_jinja_strings_and_brackets() -> None:
    script, placeholders = built('echo {{ {"a": {"b": "}}"}}["a"]["b"] }} done')
    assert script == 'echo "${PF_T1}" done'
    assert placeholders[0][0] == '{"a": {"b": "}}"}}["a"]["b"]'


def test_heredocs_with_quoted_or_tab_stripped_delimiters_end_where_the_shell_ends_them() -> None:
    source = "cat <<-'EOF' >out\n\techo $x {a}\n\tEOF\necho {{ y }}"
    assert built(source) == (
        "cat <<-'EOF' >out\n\techo $x {a}\n\tEOF\necho \"${PF_T1}\"",
        [("y", "PF_T1", True)],
    )


def test_a_here_string_word_is_a_value() -> None:
    assert built("grep x <<< {{ y }}")[0] == 'grep x <<< "${PF_T1}"'


# -- which values could be options -------------------------------------------------


@pytest.mark.parametrize(
    ("source", "starts_word"),
    [
        ("kubectl delete pod {{ p }}", True),
        ('kubectl delete pod "{{ p }}"', True),
        ("kubectl delete pod -- {{ p }}", False),
        ("kubectl delete pod -n x -- a {{ p }}", False),
        ("kubectl get pod --namespace={{ ns }}", False),
        ("kubectl get pod web-{{ n }}", False),
        ("kubectl get pod >{{ f }}", False),
        ("kubectl get pod 2> {{ f }}", False),
        ("kubectl delete pod -- a; kubectl delete pod {{ p }}", True),
        ("kubectl delete pod -- a | xargs echo {{ p }}", True),
    ],
)
def test_a_value_that_starts_a_word_is_guarded_unless_after_double_dash(
    source: str, starts_word: bool
) -> None:
    [placeholder] = construct(source).placeholders
    assert placeholder.starts_word is starts_word


def test_argv_option_guards() -> None:
    argv = ["kubectl", "delete", "pod", "{{ p }}", "--namespace={{ ns }}", "--", "{{ q }}"]
    assert shellscripts.argv_option_guards(argv) == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
    ]


# -- what is refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("echo 'sq {{ x }}'", "inside single quotes"),
        ("echo $'{{ x }}'", "inside $'...'"),
        ("echo `echo {{ x }}`", "inside backticks"),
        ('echo "`echo {{ x }}`"', "inside backticks"),
        ("echo hi # {{ x }}", "inside a comment"),
        ("# {{ x }}\necho hi", "inside a comment"),
        ("cat <<EOF\nhello {{ x }}\nEOF", "inside a heredoc body"),
        ("cat <<'EOF'\n{{ x }}\nEOF", "inside a heredoc body"),
        ("cat <<{{ x }}\nEOF", "in a heredoc delimiter"),
        ("echo $(( {{ x }} + 1 ))", "inside an arithmetic expression"),
        ("(( n = {{ x }} ))", "inside an arithmetic expression"),
        ("echo ${X:-{{ x }}}", "inside ${...}"),
        ('echo "${X:-{{ x }}}"', "inside ${...}"),
        ("echo ${{ x }}", "right after $"),
        ('echo "${{ x }}"', "right after $"),
        ("echo $POD{{ x }}", "right after a variable name"),
        ("echo \\{{ x }}", "right after a backslash"),
        ('echo "\\{{ x }}"', "right after a backslash"),
        ("eval echo {{ x }}", "an argument of eval"),
        ("if true; then eval {{ x }}; fi", "an argument of eval"),
        ("let n={{ x }}", "an argument of let"),
        ("[[ {{ x }} -eq 1 ]]", "inside [[ ]]"),
        ('sh -c "kubectl logs {{ x }}"', "in the script of a shell's -c"),
        ("bash -lc 'x'; /bin/bash -ec {{ x }}", "in the script of a shell's -c"),
        ('kubectl exec p -- env sh -c "cat {{ x }}"', "in the script of a shell's -c"),
        ('echo "{{ x }}', "ends inside"),
        ("{% if x %}rm -rf /{% endif %}", "a block"),
        ("echo {{ x", "never closed"),
    ],
)
def test_places_a_value_cannot_be_passed_are_refused(source: str, where: str) -> None:
    with pytest.raises(ShellTemplateError) as caught:
        construct(source)
    assert where in str(caught.value)


def test_a_refusal_says_where_and_how() -> None:
    problems = shellscripts.problems_of("echo ok\necho 'pod {{ alert.labels.pod }}'")
    assert problems == [
        "line 2, column 11: {{ alert.labels.pod }} is inside single quotes, where the shell "
        "does not expand variables; " + shellscripts.HOW
    ]
    assert '"$POD"' in shellscripts.HOW
    assert "env:" in shellscripts.HOW


def test_every_refused_place_is_reported() -> None:
    problems = shellscripts.problems_of("echo '{{ a }}' {{ b }} `{{ c }}`")
    assert [p.split(":")[0] for p in problems] == ["line 1, column 7", "line 1, column 25"]


def test_a_value_after_the_script_of_sh_c_is_a_positional_parameter() -> None:
    assert built("sh -c 'kubectl logs \"$1\"' sh {{ p }}")[0] == (
        'sh -c \'kubectl logs "$1"\' sh "${PF_T1}"'
    )


# -- argv ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "kubectl logs {{ p }} | tail"],
        ["/bin/bash", "-lc", "echo {{ p }}"],
        ["env", "FOO=1", "dash", "-e", "-c", "echo {{ p }}"],
        ["kubectl", "exec", "{{ p }}", "--", "sh", "-c", "cat {{ f }}"],
        ["busybox", "sh", "-c", "{% if p %}x{% endif %}"],
        ["zsh", "-o", "errexit", "-c", "echo {{ p }}"],
    ],
)
def test_argv_refuses_a_template_in_a_shells_script(argv: list[str]) -> None:
    [problem] = shellscripts.argv_problems(argv)
    assert problem.startswith(f"command[{len(argv) - 1}] is the script of a shell's -c")
    assert '"$1"' in problem


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", 'kubectl logs "$1" | tail', "sh", "{{ p }}"],
        ["sh", "script.sh", "{{ p }}"],
        ["kubectl", "logs", "{{ p }}"],
        ["bash", "-c", "echo hi"],
        ["shellcheck", "-c", "{{ p }}"],
    ],
)
def test_argv_allows_values_as_arguments(argv: list[str]) -> None:
    assert shellscripts.argv_problems(argv) == []


def test_reserved_names() -> None:
    assert shellscripts.RESERVED_NAME.match("PF_T12")
    assert not shellscripts.RESERVED_NAME.match("PF_TOKEN")
