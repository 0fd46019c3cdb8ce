"""Investigation templates: what to look at for a kind of alert, and which calls to make first.

A template is a YAML file (the built-in ones are in ``templates/`` beside this module;
users add their own in a folder, ``PF_AGENT_TEMPLATES_DIR``, where a file with a
built-in's name replaces it). It says which alerts it is for (``match.alertnames``,
``match.alertnamePatterns``), guidance for the model (what to look at, what counts
as found), the tool ``calls`` to make first and the PromQL ``signals`` the rules
compare with a threshold.

Alert values are data here too. ``$labels.X`` / ``$annotations.X`` as a whole
argument value becomes that value (a call whose value is missing is skipped, never
run with a blank); inside a PromQL query the value is escaped as a PromQL string, so
a label cannot close the quote and change the query. Selection compares the alert
name with the template's own names and glob patterns; the alert's text is never
compiled into a pattern.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import marshmallow as ma
import yaml

from shared.errors import ConfigError

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).parent / "templates"
_REFERENCE = re.compile(r"^\$(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)$")
_IN_QUERY = re.compile(r"\$(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)")


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class MatchSchema(_Strict):
    alertnames = ma.fields.List(ma.fields.String(), load_default=list)
    alertnamePatterns = ma.fields.List(ma.fields.String(), load_default=list)
    # Labels that must be present for this template to be chosen.
    labels = ma.fields.List(ma.fields.String(), load_default=list)


class CallSchema(_Strict):
    tool = ma.fields.String(required=True)
    arguments = ma.fields.Dict(keys=ma.fields.String(), load_default=dict)


class SignalSchema(_Strict):
    signal = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["cpu", "memory", "errors", "latency"])
    )
    query = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    threshold = ma.fields.Float(required=True)
    range = ma.fields.String(load_default="")


class TemplateSchema(_Strict):
    name = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[a-z0-9][-a-z0-9_]*$"))
    description = ma.fields.String(load_default="")
    priority = ma.fields.Integer(load_default=100)
    match = ma.fields.Nested(MatchSchema, load_default=dict)
    guidance = ma.fields.String(load_default="")
    calls = ma.fields.List(ma.fields.Nested(CallSchema), load_default=list)
    signals = ma.fields.List(ma.fields.Nested(SignalSchema), load_default=list)


@dataclasses.dataclass(frozen=True)
class Call:
    tool: str
    arguments: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Signal:
    signal: str
    query: str
    threshold: float
    range: str = ""


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    description: str
    priority: int
    alertnames: frozenset[str]
    patterns: tuple[str, ...]
    required_labels: tuple[str, ...]
    guidance: str
    calls: tuple[Mapping[str, Any], ...]
    signals: tuple[Mapping[str, Any], ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(not labels.get(label) for label in self.required_labels):
            return False
        name = labels.get("alertname", "")
        return name in self.alertnames or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def first_calls(self, alert: Mapping[str, Any]) -> list[Call]:
        """The template's calls with alert values filled in; calls missing a value are left out."""
        calls = []
        for raw in self.calls:
            arguments = fill_arguments(raw.get("arguments") or {}, alert)
            if arguments is not None:
                calls.append(Call(str(raw["tool"]), arguments))
        return calls

    def signal_queries(self, alert: Mapping[str, Any]) -> list[Signal]:
        found = []
        for raw in self.signals:
            query = fill_query(str(raw["query"]), alert)
            if query is not None:
                found.append(
                    Signal(
                        str(raw["signal"]),
                        query,
                        float(raw["threshold"]),
                        str(raw.get("range") or ""),
                    )
                )
        return found


def _value(alert: Mapping[str, Any], source: str, key: str) -> str | None:
    values = alert.get(source) or {}
    value = values.get(key) if isinstance(values, Mapping) else None
    return str(value) if value not in (None, "") else None


def fill_arguments(arguments: Mapping[str, Any], alert: Mapping[str, Any]) -> dict[str, Any] | None:
    filled: dict[str, Any] = {}
    for key, value in arguments.items():
        match = _REFERENCE.match(value) if isinstance(value, str) else None
        if match:
            found = _value(alert, match.group(1), match.group(2))
            if found is None:
                if key in ("container",):
                    continue  # optional: leave it out
                return None
            filled[key] = found
        else:
            filled[key] = value
    return filled


def promql_string(value: str) -> str:
    """``value`` escaped for the inside of a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def fill_query(query: str, alert: Mapping[str, Any]) -> str | None:
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        found = _value(alert, match.group(1), match.group(2))
        if found is None:
            missing = True
            return ""
        return promql_string(found)

    filled = _IN_QUERY.sub(replace, query)
    return None if missing else filled


def parse(raw: Any, where: str) -> Template:
    try:
        data = TemplateSchema().load(raw if isinstance(raw, dict) else {})
    except ma.ValidationError as exc:
        raise ConfigError(f"investigation template {where}: {exc.messages}") from exc
    match = data["match"]
    return Template(
        name=data["name"],
        description=data["description"],
        priority=data["priority"],
        alertnames=frozenset(match["alertnames"]),
        patterns=tuple(match["alertnamePatterns"]),
        required_labels=tuple(match["labels"]),
        guidance=data["guidance"],
        calls=tuple(data["calls"]),
        signals=tuple(data["signals"]),
    )


def load_dir(folder: Path) -> dict[str, Template]:
    found: dict[str, Template] = {}
    for path in sorted(folder.glob("*.y*ml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"investigation template {path}: {exc}") from exc
        template = parse(raw, str(path))
        found[template.name] = template
    return found


class Catalog:
    """Built-in templates, replaced or extended by a user folder."""

    def __init__(self, user_dir: Path | None = None) -> None:
        self.templates = load_dir(BUILTIN_DIR)
        if user_dir is not None:
            if not user_dir.is_dir():
                raise ConfigError(f"investigation template folder {user_dir} does not exist")
            self.templates.update(load_dir(user_dir))
        if "generic" not in self.templates:
            raise ConfigError("no 'generic' investigation template")

    def get(self, name: str) -> Template:
        try:
            return self.templates[name]
        except KeyError:
            raise ConfigError(
                f"no investigation template {name!r}; templates: "
                f"{', '.join(sorted(self.templates))}"
            ) from None

    def choose(self, labels: Mapping[str, str], override: str = "") -> Template:
        if override:
            return self.get(override)
        for template in sorted(self.templates.values(), key=lambda t: (t.priority, t.name)):
            if template.name != "generic" and template.matches(labels):
                return template
        return self.templates["generic"]

    def names(self) -> Sequence[str]:
        return sorted(self.templates)
