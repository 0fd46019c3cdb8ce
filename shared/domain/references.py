"""What a template reads: the run-context names and the steps it refers to.

Validation uses this to refuse, before anything runs, a template that reads a step
that does not exist or has not run yet, a name that is not in the run context
(``alrt.labels``), or a step whose name has a ``-`` written with a dot:
``steps.apply-fix.phase`` is, to Jinja, ``steps.apply - fix.phase``. The syntax
tree comes from ``templates.parse_template`` / ``parse_expression``, so what is
analysed is exactly what the engine compiles; no regular expressions guess at it.

What this module must not do: render anything, or know which fields of a Workflow
are templates (the step schemas say that).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection

from jinja2 import meta, nodes

from shared.domain import templates

# What the run context holds (see the engine's contexts): alert, source, env, steps,
# run, and schedule for runs a schedule started; plus the sandbox's globals.
CONTEXT_NAMES = frozenset({"alert", "source", "env", "steps", "run", "schedule"})
GLOBAL_NAMES = frozenset({"range", "dict"})


@dataclasses.dataclass(frozen=True)
class Found:
    """The names one template or expression reads."""

    # Step names read as steps.<name> or steps['<name>'].
    steps: frozenset[str] = frozenset()
    # Names Jinja reads as ``steps.<first> - <more>...``: (first, "first-more-...").
    dashed: frozenset[tuple[str, str]] = frozenset()
    # Top-level names the template reads without defining them.
    names: frozenset[str] = frozenset()


# Compiling costs about a millisecond a template, and the controller re-validates
# every resource on each status refresh: remember the answers (a pure function of
# the text; failures are not cached and are recomputed).
_CACHE_SIZE = 2048


@functools.lru_cache(maxsize=_CACHE_SIZE)
def of_template(source: str) -> Found:
    """Raises ``templates.TemplateError`` when ``source`` does not compile."""
    if not templates.is_template(source):
        return Found()  # used as it is, like Templates.render does
    return _scan(templates.parse_template(source))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def of_expression(source: str) -> Found:
    """Raises ``templates.TemplateError`` when ``source`` does not compile."""
    return _scan(templates.parse_expression(source))


def problems(found: Found, *, earlier: Collection[str], known: Collection[str]) -> list[str]:
    """What is wrong with the references in ``found``, one message each.

    ``known``: every step of the Workflow; ``earlier``: the steps whose results exist
    when the template is rendered (the steps before it; all of them for outputs).
    """
    messages: list[str] = []
    excused_steps: set[str] = set()
    excused_names: set[str] = set()
    for first, written in sorted(found.dashed):
        if written in known:
            rest = written[len(first) + 1 :]
            messages.append(
                f"steps.{written} reads as steps.{first} minus {rest}: "
                f"write steps['{written}'] for a step name with '-'."
            )
            excused_steps.add(first)
            excused_names.update(part for part in rest.split("-") if not part.isdigit())
    for name in sorted(found.steps - excused_steps):
        if name not in known:
            messages.append(f"No step named {name!r} in this Workflow (steps.{name}).")
        elif name not in earlier:
            messages.append(
                f"Step {name!r} does not run before this one: a step can only read the "
                "results of the steps before it."
            )
    unknown = found.names - CONTEXT_NAMES - GLOBAL_NAMES - excused_names
    for name in sorted(unknown):
        messages.append(
            f"{name!r} is not in the run context (it holds {', '.join(sorted(CONTEXT_NAMES))})."
        )
    return messages


def _is_steps(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "steps"


def _root_name(node: nodes.Node) -> str | None:
    """``fix`` for ``fix``, ``fix.phase`` or ``fix['x']``; a number's digits too."""
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Const) and isinstance(node.value, int):
        return str(node.value)
    return None


def _dashed_parts(node: nodes.Node) -> list[str] | None:
    """``[apply, fix]`` for ``steps.apply - fix...``; None for anything else."""
    if isinstance(node, nodes.Getattr) and _is_steps(node.node):
        return [node.attr]
    if not isinstance(node, nodes.Sub):
        return None
    left = _dashed_parts(node.left)
    right = _root_name(node.right)
    if left is None or right is None:
        return None
    return [*left, right]


def _scan(tree: nodes.Template) -> Found:
    # steps.items() and the like call a method of the mapping: not a step.
    called = {id(call.node) for call in tree.find_all(nodes.Call)}
    steps: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in called:
            continue
        if isinstance(node, nodes.Getattr) and _is_steps(node.node):
            steps.add(node.attr)
        elif (
            isinstance(node, nodes.Getitem)
            and _is_steps(node.node)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            steps.add(node.arg.value)
        # steps[some_expression]: decided at run time, nothing to check here.
    dashed: set[tuple[str, str]] = set()
    for sub in tree.find_all(nodes.Sub):
        parts = _dashed_parts(sub)
        if parts is not None:
            dashed.add((parts[0], "-".join(parts)))
    return Found(
        steps=frozenset(steps),
        dashed=frozenset(dashed),
        names=frozenset(meta.find_undeclared_variables(tree)),
    )
