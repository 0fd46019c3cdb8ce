"""Marshmallow pieces shared by the Source, Workflow and Sink schemas.

The schemas here are the single source of truth for resources: they validate files,
validate what the controller receives, and are rendered into the CRD manifests by
``shared.resources.crds``. Anything a schema needs that marshmallow does not have
lives in this module, so that the CRD generator knows every field type it can meet.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma

# Kubernetes object names (DNS-1123 subdomain); Sinks and Workflows are referred to
# by these names, so references are checked with the same rule.
NAME = ma.validate.Regexp(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    error="Must be a lowercase DNS name: letters, digits, '-' and '.', starting and "
    "ending alphanumeric.",
)
NAME_LENGTH = ma.validate.Length(min=1, max=253)
# Namespaces are DNS-1123 labels.
NAMESPACE = ma.validate.Regexp(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    error="Must be a lowercase DNS label: letters, digits and '-'.",
)
# Keys of a Kubernetes Secret.
SECRET_KEY = ma.validate.Regexp(
    r"^[-._a-zA-Z0-9]+$", error="Must be letters, digits, '-', '_' or '.'."
)
# Prometheus label names, as used in AlertManager alerts.
LABEL_NAME = ma.validate.Regexp(
    r"^[a-zA-Z_][a-zA-Z0-9_]*$", error="Must be a Prometheus label name."
)


def describe(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: ``description`` ends up in the CRD (and ``kubectl explain``)."""
    return {"description": text, **extra}


def defaults_of(schema: type[ma.Schema]) -> Callable[[], dict[str, Any]]:
    """A ``load_default`` that yields the nested schema's own defaults.

    marshmallow returns a plain ``load_default`` value as is, so ``load_default=dict``
    on a Nested field would skip the defaults of the fields inside it.
    """

    def build() -> dict[str, Any]:
        loaded: dict[str, Any] = schema().load({})
        return loaded

    return build


class StrictSchema(ma.Schema):
    """Unknown fields are errors: a typo in a resource must not pass silently."""

    class Meta:
        unknown = ma.RAISE


class SecretRefSchema(StrictSchema):
    """A key of a Secret in the resource's namespace (a folder in file mode)."""

    name = ma.fields.String(
        required=True, validate=[NAME_LENGTH, NAME], metadata=describe("Secret name.")
    )
    key = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=253), SECRET_KEY],
        metadata=describe("Key inside the Secret."),
    )


class ByType(ma.fields.Field):  # type: ignore[type-arg]
    """An object whose schema is picked by a sibling field (``type``).

    Sources and Sinks keep one ``config`` block per type rather than one flat bag of
    every type's fields; this field loads and dumps it with the schema registered for
    the resource's type. An unknown type is left to the ``type`` field to report.
    """

    def __init__(
        self,
        schemas: Mapping[str, type[ma.Schema]],
        *,
        type_field: str = "type",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.schemas = schemas
        self.type_field = type_field

    def _schema_for(self, parent: object) -> type[ma.Schema] | None:
        if not isinstance(parent, Mapping):
            return None
        type_name = parent.get(self.type_field)
        return self.schemas.get(type_name) if isinstance(type_name, str) else None

    def _nearest(self, parent: object) -> tuple[str, str] | None:
        """(misspelt type, the known type it most likely meant): webhok, webhook."""
        type_name = parent.get(self.type_field) if isinstance(parent, Mapping) else None
        if not isinstance(type_name, str) or type_name in self.schemas:
            return None
        close = difflib.get_close_matches(type_name.lower(), list(self.schemas), n=1, cutoff=0.6)
        return (type_name, close[0]) if close else None

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        schema = self._schema_for(data)
        nearest = None
        if schema is None:
            # The type field reports the bad type; the config is still checked as
            # the type it most likely meant, so that one pass shows both problems.
            nearest = self._nearest(data)
            if nearest is None:
                return value
            schema = self.schemas[nearest[1]]
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ma.ValidationError("Must be an object.")
        if nearest is None:
            return schema().load(value)
        try:
            return schema().load(value)
        except ma.ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            note = f"Checked as type {nearest[1]!r}, the nearest to {nearest[0]!r}."
            raise ma.ValidationError({"_schema": [note], **messages}) from exc

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        schema = self._schema_for(obj)
        if schema is None or value is None:
            return value
        return schema().dump(value)


class Dict(ma.fields.Dict):
    """marshmallow's Dict, with each entry's problems at the entry's own path.

    marshmallow files them under ``<entry>.value`` and ``<entry>.key``, which read
    as fields of the resource (``spec.config.filters.severity.value: Not a valid
    list.``); here they are ``spec.config.filters.severity: Not a valid list.``
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-untyped-call]
        except ma.ValidationError as exc:
            if not isinstance(exc.messages, dict):
                raise
            raise ma.ValidationError(
                {entry: _entry_problems(problems) for entry, problems in exc.messages.items()},
                valid_data=exc.valid_data,
            ) from exc


def _entry_problems(problems: Any) -> Any:
    if not isinstance(problems, dict) or not set(problems) <= {"key", "value"}:
        return problems
    key_problems = [f"Bad key: {problem}" for problem in problems.get("key", [])]
    value_problems = problems.get("value")
    if value_problems is None:
        return key_problems
    if not key_problems:
        return value_problems
    if isinstance(value_problems, dict):
        return {"_schema": key_problems, **value_problems}
    return [*key_problems, *value_problems]


class Polymorphic(ma.fields.Field):  # type: ignore[type-arg]
    """A list item whose own ``type`` field picks its schema (Workflow steps)."""

    def __init__(self, schemas: Mapping[str, type[ma.Schema]], *, what: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schemas = schemas
        self.what = what

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if not isinstance(value, Mapping):
            raise ma.ValidationError("Must be an object.")
        type_name = value.get("type")
        schema = self.schemas.get(type_name) if isinstance(type_name, str) else None
        if schema is None:
            known = ", ".join(sorted(self.schemas))
            problem = (
                "Missing data for required field."
                if type_name is None
                else f"Unknown {self.what} type {type_name!r}; known types: {known}."
            )
            raise ma.ValidationError({"type": [problem]})
        return schema().load(value)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return self.schemas[value["type"]]().dump(value)
