"""Which alerts a Source lets through: label filters and AlertManager matchers.

Two forms, both from the Source's ``config``:

- ``filters``: the seed's map of label name to allowed values
  (``{severity: [critical, warning]}``); an alert without the label does not pass.
- ``matchers``: AlertManager's matcher syntax, ``name=value``, ``name!=value``,
  ``name=~regex``, ``name!~regex``, values quoted or not. Regexes are anchored at
  both ends as in AlertManager, and a missing label matches as the empty string.

Regexes are RE2 (google-re2), AlertManager's own dialect, never Python's ``re``: a
label value comes from whoever can name a pod, and a backtracking engine lets one
value such as ``aaaa…!`` against ``([a-z0-9]+[.]?)+`` hold a worker for minutes. RE2
matches in time linear in the value; what it cannot compile (backreferences,
lookarounds, possessive repeats) is refused when the Source is validated.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import re2  # type: ignore[import-untyped]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*
        (?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^"\s][^"]*?|)\s*$""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", '"': '"', "\\": "\\"}
_RE2_OPTIONS = re2.Options()
# Errors are raised as MatcherError with the pattern; RE2's own log line would only
# repeat them on stderr.
_RE2_OPTIONS.log_errors = False


class MatcherError(ValueError):
    """A matcher string that cannot be parsed (the message shows it)."""


class Operator(enum.StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclasses.dataclass(frozen=True)
class Matcher:
    name: str
    operator: Operator
    value: str
    # A compiled RE2 regex (google-re2 has no type hints), anchored at both ends.
    pattern: Any = dataclasses.field(default=None, compare=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.operator is Operator.EQUAL:
            return actual == self.value
        if self.operator is Operator.NOT_EQUAL:
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.operator is Operator.REGEX else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.operator}"{escaped}"'


def _unquote(raw: str) -> str:
    if not (len(raw) >= 2 and raw[0] == raw[-1] == '"'):
        return raw
    out: list[str] = []
    chars = iter(raw[1:-1])
    for char in chars:
        if char == "\\":
            nxt = next(chars, "\\")
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    found = _MATCHER.match(text)
    if found is None:
        raise MatcherError(
            f"cannot parse matcher {text!r}: expected NAME=VALUE, NAME!=VALUE, "
            'NAME=~REGEX or NAME!~REGEX (e.g. namespace=~"prod|staging")'
        )
    operator = Operator(found["op"])
    value = _unquote(found["value"])
    pattern = None
    if operator in (Operator.REGEX, Operator.NOT_REGEX):
        pattern = compile_anchored(value, text)
    return Matcher(found["name"], operator, value, pattern)


def compile_anchored(regex: str, text: str | None = None) -> Any:
    """Compile ``regex`` with RE2, anchored as AlertManager does: ``^(?:regex)$``."""
    where = f"matcher {text!r}" if text is not None else f"regex {regex!r}"
    try:
        return re2.compile(f"^(?:{regex})$", _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        raise MatcherError(
            f"{where}: bad regular expression (RE2 syntax, as in AlertManager): {reason}"
        ) from exc
    except UnicodeEncodeError as exc:
        raise MatcherError(f"{where}: the regular expression is not valid UTF-8") from exc


@dataclasses.dataclass(frozen=True)
class AlertFilter:
    """Allowed label values plus matchers; an alert passes when every rule holds."""

    allowed_values: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    matchers: Sequence[Matcher] = ()

    @classmethod
    def build(
        cls, filters: Mapping[str, Iterable[str]] | None, matchers: Iterable[str] | None
    ) -> AlertFilter:
        return cls(
            allowed_values={name: frozenset(values) for name, values in (filters or {}).items()},
            matchers=tuple(parse_matcher(text) for text in (matchers or ())),
        )

    def admits(self, labels: Mapping[str, str]) -> bool:
        for name, allowed in self.allowed_values.items():
            if labels.get(name) not in allowed:
                return False
        return all(matcher.matches(labels) for matcher in self.matchers)
