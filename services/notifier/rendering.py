"""The one door through which the notifier renders templates and evaluates conditions.

Sink templates and ``condition`` expressions read alert values that anyone who can
reach AlertManager wrote, so they go through the project's Jinja2 sandbox and
nothing else: no underscore attributes, no unsafe calls, no loader, a missing field
is an error naming the field rather than an empty string.

The sandbox moves to ``shared/domain/templates.py`` with the domain-model issue;
until it lands, ``_Interim`` below is a minimal stand-in with the same rules, and
switching over is a change to ``_templates`` only.

What this module must not do: execute or send anything it renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.exceptions
from jinja2 import sandbox

from shared.errors import PermanentError

_LIMIT = 1024 * 1024
_CACHE_SIZE = 256


class RenderError(PermanentError):
    """A template or condition could not be rendered; retrying will not help."""


class _Interim:
    """Stand-in for ``shared.domain.templates.Templates`` (same two calls)."""

    def __init__(self) -> None:
        self._env = sandbox.ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self._env.globals = {"range": self._env.globals["range"], "dict": dict}
        # Compiling the built-in Slack layout costs about 35 ms; rendering it 1 ms.
        self._compiled: dict[str, jinja2.Template] = {}

    def render(self, source: str, namespace: Mapping[str, Any], *, where: str) -> str:
        try:
            template = self._compiled.get(source)
            if template is None:
                if len(self._compiled) >= _CACHE_SIZE:
                    self._compiled.clear()
                template = self._compiled[source] = self._env.from_string(source)
            text = template.render(namespace)
        except Exception as exc:  # every template failure becomes one message
            raise RenderError(f"{where}: {_describe(exc)}") from exc
        if len(text) > _LIMIT:
            raise RenderError(f"{where}: rendered over 1 MiB")
        return text

    def evaluate(self, expression: str, namespace: Mapping[str, Any], *, where: str) -> Any:
        source = expression.strip()
        if source.startswith("{{") and source.endswith("}}"):
            source = source[2:-2].strip()
        try:
            value = self._env.compile_expression(source, undefined_to_none=False)(**namespace)
            if isinstance(value, jinja2.Undefined):
                bool(value)  # StrictUndefined raises with its own message
        except Exception as exc:
            raise RenderError(f"{where}: {_describe(exc)}") from exc
        return value


def _describe(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"


_templates = _Interim()


def render(source: str, namespace: Mapping[str, Any], *, where: str) -> str:
    """Render ``source`` in the sandbox; ``where`` names the Sink and field in errors."""
    try:
        return _templates.render(source, namespace, where=where)
    except PermanentError as exc:
        raise RenderError(str(exc)) from exc


def evaluate(expression: str, namespace: Mapping[str, Any], *, where: str) -> Any:
    """The value of a sandboxed expression such as ``run.phase == "Failed"``."""
    try:
        return _templates.evaluate(expression, namespace, where=where)
    except PermanentError as exc:
        raise RenderError(str(exc)) from exc
