"""Templates and expressions over a run's context, in a Jinja2 sandbox.

One sandbox for every deployable: the engine renders step fields with it, Workflow
validation (``punchingfist validate``, the controller, the engine's loader) compiles
every template with it (``parse_template``, ``parse_expression``), and the notifier
and the agent render their templates with it, so what validates is what runs.

Workflow authors write ``{{ alert.labels.pod }}``, ``{{ source.context.cluster }}``,
``{{ steps.look.output.stdout }}`` and ``{{ env.X }}``. Alert labels come from
outside (whoever can reach AlertManager), so rendering must never reach Python
internals or the filesystem:

* ``ImmutableSandboxedEnvironment`` refuses underscore attributes, unsafe callables
  and mutation of the context; there is no loader, so ``include``/``import`` fail;
* string and list repetition and powers are bounded, so ``'a' * 10**9`` is refused
  instead of exhausting the worker's memory;
* ``StrictUndefined``: a missing field is an error naming the expression, never an
  empty string that turns ``kubectl logs {{ alert.labels.pod }}`` into
  ``kubectl logs``.

The seed's examples use Go-style paths (``{{ .alert.labels.pod }}``); they are
accepted by dropping the leading dot, which is the only Go syntax they used.

What this module must not do: execute anything it renders, or render values into
shell source: ``shell: true`` steps pass values in environment variables
(``shared.domain.shellscripts``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.nodes
from jinja2 import sandbox

from shared.errors import PermanentError

# Longest string a template may produce, and longest result of ``*``: 1 MiB.
MAX_RENDERED = 1024 * 1024
# Largest exponent ``**`` accepts (10**100 is fine, 10**10**9 is not).
MAX_EXPONENT = 100
_CACHE_SIZE = 512

_STRING_LITERAL = re.compile(r"""("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')""")
# A dot that starts a path (Go's ".alert"): not after a name, a number, ')' or ']'.
_GO_ROOT_DOT = re.compile(r"(^|[^\w\)\]\}])\.(?=[A-Za-z_])")
_TAGS = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.DOTALL)


class TemplateError(PermanentError):
    """A template or expression could not be rendered; retrying will not help."""


class _Sandbox(sandbox.ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise jinja2.exceptions.SecurityError(
                    f"exponent {right} is larger than {MAX_EXPONENT}"
                )
            return left**right
        # operator == "*": refuse big repetitions before they are built.
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(times, int)
                and len(seq) * times > MAX_RENDERED
            ):
                raise jinja2.exceptions.SecurityError("repetition result is larger than 1 MiB")
        return left * right


def _make_environment(finalize: Callable[[Any], Any] | None) -> _Sandbox:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    # Only data helpers; no cycler/joiner/lipsum/namespace objects to poke at.
    env.globals = {"range": env.globals["range"], "dict": dict}
    return env


def from_go_style(source: str) -> str:
    """``{{ .alert.labels.pod }}`` -> ``{{ alert.labels.pod }}``; strings inside are kept."""

    def fix_tag(match: re.Match[str]) -> str:
        parts = _STRING_LITERAL.split(match.group(0))
        # Odd indexes are the string literals captured by split.
        return "".join(
            part if i % 2 else _GO_ROOT_DOT.sub(r"\1", part) for i, part in enumerate(parts)
        )

    return _TAGS.sub(fix_tag, source)


def _expression_text(expression: str) -> str:
    """What Jinja compiles for a condition; one written as ``{{ x == 1 }}`` is accepted."""
    source = expression.strip()
    if source.startswith("{{") and source.endswith("}}"):
        source = source[2:-2].strip()
    return from_go_style("{{" + source + "}}")[2:-2]


def is_template(source: str) -> bool:
    """Whether ``source`` has tags; a string without any is used as it is, unrendered."""
    return "{{" in source or "{%" in source


def _excerpt(source: str, limit: int = 200) -> str:
    return source if len(source) <= limit else source[: limit - 3] + "..."


class Templates:
    """Compiles (with a bounded cache) and renders templates and expressions."""

    def __init__(self) -> None:
        self._plain = _make_environment(None)
        self._templates: dict[str, jinja2.Template] = {}
        self._expressions: dict[str, Any] = {}

    def render(self, source: str, namespace: Mapping[str, Any], *, where: str) -> str:
        """Render ``source``; ``where`` names the step and field for error messages."""
        if not is_template(source):
            return source
        try:
            template = self._templates.get(source)
            if template is None:
                template = self._plain.from_string(from_go_style(source))
                self._remember(self._templates, source, template)
            rendered = template.render(namespace)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{where}: template {_excerpt(source)!r} is not valid: {exc.message}"
            ) from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"{where}: template {_excerpt(source)!r}: {exc.message} "
                "(use '| default(...)' for optional fields)"
            ) from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"{where}: template {_excerpt(source)!r} was refused by the sandbox: {exc}"
            ) from exc
        except Exception as exc:  # a filter or operator failed on the data it got
            raise TemplateError(
                f"{where}: template {_excerpt(source)!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if len(rendered) > MAX_RENDERED:
            raise TemplateError(f"{where}: template {_excerpt(source)!r} rendered over 1 MiB")
        return rendered

    def render_value(self, value: Any, namespace: Mapping[str, Any], *, where: str) -> Any:
        """Render every string inside lists and mappings; other values pass through."""
        if isinstance(value, str):
            return self.render(value, namespace, where=where)
        if isinstance(value, list | tuple):
            return [
                self.render_value(item, namespace, where=f"{where}[{i}]")
                for i, item in enumerate(value)
            ]
        if isinstance(value, Mapping):
            return {
                key: self.render_value(item, namespace, where=f"{where}.{key}")
                for key, item in value.items()
            }
        return value

    def evaluate(self, expression: str, namespace: Mapping[str, Any], *, where: str) -> Any:
        """The value of a Jinja expression such as ``alert.severity == 'critical'``."""
        source = expression.strip()
        try:
            compiled = self._expressions.get(source)
            if compiled is None:
                compiled = self._plain.compile_expression(
                    _expression_text(source), undefined_to_none=False
                )
                self._remember(self._expressions, source, compiled)
            value = compiled(**namespace)
            if isinstance(value, jinja2.Undefined):
                # Touch it so that StrictUndefined raises with its own message.
                bool(value)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{where}: expression {_excerpt(expression)!r} is not valid: {exc.message} "
                "(write a Jinja expression, e.g. alert.labels.severity == 'critical')"
            ) from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"{where}: expression {_excerpt(expression)!r}: {exc.message}"
            ) from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"{where}: expression {_excerpt(expression)!r} was refused by the sandbox: {exc}"
            ) from exc
        except Exception as exc:
            raise TemplateError(
                f"{where}: expression {_excerpt(expression)!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return value

    @staticmethod
    def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = value


# Environments for compiling without rendering (validation): the same configuration
# as ``Templates`` uses, without its caches. Jinja environments are not changed after
# they are built, so sharing them is safe.
_CHECKER = _make_environment(None)


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def parse_template(source: str, *, where: str | None = None) -> jinja2.nodes.Template:
    """Compile ``source`` as ``Templates.render`` would; return its syntax tree.

    Raises ``TemplateError`` when it does not compile (syntax, unknown filter or
    test). Nothing is rendered: this is how validation proves a template can run.
    """
    env = _CHECKER
    text = from_go_style(source)
    try:
        tree = env.parse(text)
        # Generating the code is what finds unknown filters and tests; the Python
        # compile of that code (``raw=False``) would find nothing more. The
        # generator's constant folding never touches names, so the tree still
        # says what the template reads.
        env.compile(tree, raw=True)
        return tree
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{_prefix(where)}template {_excerpt(source)!r} is not valid: {exc.message}"
        ) from exc


def parse_expression(expression: str, *, where: str | None = None) -> jinja2.nodes.Template:
    """Compile ``expression`` as ``Templates.evaluate`` would; return its syntax tree.

    The tree is that of the template ``{{ <expression> }}``.
    """
    env = _CHECKER
    text = _expression_text(expression)
    try:
        env.compile_expression(text, undefined_to_none=False)
        # compile_expression accepted exactly one expression, so the template below
        # holds that expression and nothing else.
        return env.parse("{{ " + text + " }}")
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{_prefix(where)}expression {_excerpt(expression)!r} is not valid: {exc.message} "
            "(write a Jinja expression, e.g. alert.labels.severity == 'critical')"
        ) from exc
