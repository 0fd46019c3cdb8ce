"""The one door through which the notifier renders templates and evaluates conditions.

Sink templates and ``condition`` expressions read alert values that anyone who can
reach AlertManager wrote, so they go through the project's Jinja2 sandbox
(``shared.domain.templates``, the same one the engine renders steps with) and
nothing else: no underscore attributes, no unsafe calls, no loader, bounded
repetition, and a missing field is an error naming the field rather than an empty
string. Compiled templates are cached per process (the built-in Slack layout costs
about 35 ms to compile and 1 ms to render).

What this module must not do: execute or send anything it renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain import templates
from shared.errors import PermanentError


class RenderError(PermanentError):
    """A template or condition could not be rendered; retrying will not help."""


_templates = templates.Templates()


def render(source: str, namespace: Mapping[str, Any], *, where: str) -> str:
    """Render ``source`` in the sandbox; ``where`` names the Sink and field in errors."""
    try:
        return _templates.render(source, namespace, where=where)
    except templates.TemplateError as exc:
        raise RenderError(str(exc)) from exc


def evaluate(expression: str, namespace: Mapping[str, Any], *, where: str) -> Any:
    """The value of a sandboxed expression such as ``run.phase == "Failed"``."""
    try:
        return _templates.evaluate(expression, namespace, where=where)
    except templates.TemplateError as exc:
        raise RenderError(str(exc)) from exc
