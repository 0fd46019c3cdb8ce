"""Shell templates made safe by construction: a value never becomes shell source.

A ``cli`` step with ``shell: true`` is a Jinja template of a shell script, and its
values come from alerts (whoever can name a pod controls a label). Quoting each value
(``shlex.quote``) protects a bare word only: inside ``"..."`` or ``'...'`` the quotes
break out. So the values do not go into the script at all. Each ``{{ expr }}`` becomes
a reference to an environment variable, ``"${PF_T1}"`` as a bare word and ``${PF_T1}``
inside double quotes, and the engine passes the expression's value in that variable.
The shell expands a variable once and never parses the result as code.

That holds only where the shell expands the reference as plain data, so the script
is lexed by ``shared.domain.shellwords`` (words, ``'...'``, ``"..."``, ``$'...'``,
backticks, ``$(...)``, ``${...}``, ``$((...))``, comments, heredocs) to know where each
``{{ }}`` stands. It
refuses the places where the reference would not expand (single quotes, ``$'...'``,
comments, heredoc bodies), where the shell would evaluate the value once more as code
(backticks, arithmetic, ``[[ ]]``, ``eval``, ``let``, the script argument of
``sh -c``), and where it would change the meaning of the text next to it (right after
``$``, a variable name or a backslash; inside ``${...}``). ``{% %}`` blocks are
refused: they would make the script's text depend on the data.

Each placeholder also says whether its value begins a word of its command with no
literal ``--`` before it: a value starting with ``-`` there is read as an option
(``kubectl delete pod "$POD"`` with ``--all``), which the engine refuses unless the
step opts in.

What this module must not do: evaluate anything, or put a value into a script. It is
pure (no I/O, no Jinja); the caller evaluates each expression in its sandbox.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from shared.domain.shellwords import (
    ENDS,
    HOW,
    PREFIX,
    RESERVED_NAME,
    TAG_OPENERS,
    Item,
    Lexer,
    Placeholder,
    Tag,
    position,
    shell_script_index,
)

__all__ = [
    "HOW",
    "PREFIX",
    "RESERVED_NAME",
    "Placeholder",
    "ShellScript",
    "ShellTemplateError",
    "argv_option_guards",
    "argv_problems",
    "construct",
    "has_template",
    "problems_of",
    "shell_script_index",
]


class ShellTemplateError(ValueError):
    """The template puts ``{{ }}`` where its value cannot be passed safely."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclasses.dataclass(frozen=True)
class ShellScript:
    """The script to run (no value in it) and the values to pass, by variable."""

    script: str
    placeholders: tuple[Placeholder, ...]


def has_template(source: str) -> bool:
    return any(opener in source for opener in TAG_OPENERS)


@functools.lru_cache(maxsize=256)
def construct(source: str) -> ShellScript:
    """The safe script for ``source``; ShellTemplateError lists every refused place."""
    if not has_template(source):
        return ShellScript(source, ())
    items, problems = _split(source)
    lexer = Lexer(source, items)
    lexer.run()
    problems += lexer.problems
    if problems:
        raise ShellTemplateError(problems)
    return ShellScript("".join(lexer.out), tuple(lexer.placeholders))


def problems_of(source: str) -> list[str]:
    """What ``construct`` refuses in ``source`` (empty when it is fine)."""
    try:
        construct(source)
    except ShellTemplateError as exc:
        return list(exc.problems)
    return []


def argv_problems(argv: Sequence[str]) -> list[str]:
    """Templates in an argv that a program would run as shell code (``sh -c``)."""
    index = shell_script_index(list(argv))
    if index is None or index >= len(argv) or not has_template(argv[index]):
        return []
    return [
        f"command[{index}] is the script of a shell's -c and holds a template: the shell "
        "would run the value as code. Use shell: true (values are passed safely), or "
        'pass values as arguments after the script and use them as "$1", "$2": '
        "['sh', '-c', 'kubectl logs \"$1\" | tail', 'sh', '{{ alert.labels.pod }}']"
    ]


def argv_option_guards(argv: Sequence[str]) -> list[bool]:
    """For each element: a value from a template that could be read as an option.

    True when the element holds a template, does not itself start with a literal
    ``-`` (``--namespace={{ ns }}`` is fine), and no literal ``--`` comes before it.
    """
    guards = []
    after_double_dash = False
    for part in argv:
        guards.append(has_template(part) and not part.startswith("-") and not after_double_dash)
        after_double_dash = after_double_dash or part == "--"
    return guards


# -- Jinja tags ---------------------------------------------------------------------


def _split(source: str) -> tuple[list[Item], list[str]]:
    """The source as characters and tags, with Jinja's whitespace control applied."""
    items: list[Item] = []
    problems: list[str] = []
    strip_next = False
    i = 0
    n = len(source)
    while i < n:
        opener = source[i : i + 2]
        if opener not in ENDS:
            if not (strip_next and source[i].isspace()):
                items.append(source[i])
                strip_next = False
            i += 1
            continue
        strip_next = False
        start = i
        i += 2
        if i < n and source[i] in "-+":
            if source[i] == "-":
                while items and isinstance(items[-1], str) and items[-1].isspace():
                    items.pop()
            i += 1
        body_start = i
        end = _tag_end(source, i, ENDS[opener])
        if end is None:
            line, column = position(source, start)
            problems.append(f"line {line}, column {column}: {opener} is never closed")
            break
        body_end = end
        if source[end - 1 : end] in ("-", "+") and end - 1 >= i:
            strip_next = source[end - 1] == "-"
            body_end = end - 1
        i = end + 2
        if opener == "{#":
            continue
        items.append(Tag(opener, source[body_start:body_end], start))
    return items, problems


def _tag_end(source: str, i: int, end: str) -> int | None:
    """Index of the ``end`` marker that closes a tag body starting at ``i``.

    Like Jinja's lexer: string literals are skipped and brackets balanced, so
    ``{{ {'a': {'b': 1}} }}`` and ``{{ '}}' }}`` end where Jinja ends them.
    """
    depth = 0
    n = len(source)
    while i < n:
        char = source[i]
        if end == "#}":
            if source.startswith(end, i):
                return i
            i += 1
            continue
        if char in "'\"":
            i += 1
            while i < n and source[i] != char:
                i += 2 if source[i] == "\\" else 1
            i += 1
            continue
        if depth == 0 and source.startswith(end, i):
            return i
        if char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        i += 1
    return None
