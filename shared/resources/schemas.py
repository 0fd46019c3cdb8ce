"""One schema per kind, and the functions everyone validates resources with.

``KINDS`` is the registry of resource kinds: their schemas, Kubernetes names and
printer columns. The CRD generator, the file loader, ``punchingfist validate`` and
the controller all go through ``normalize`` / ``load_document``, so a resource is
judged the same wherever it comes from. The normalized spec (CR field names,
defaults applied) is what gets stored and what ingest, engine and notifier read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import marshmallow as ma

from shared.domain import workflows as workflow_domain
from shared.errors import ValidationError
from shared.resources import sinks, sources, status, workflows
from shared.resources.fields import NAME, NAME_LENGTH, NAMESPACE, describe

GROUP = "punchingfist.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "punchingfist"
DEFAULT_NAMESPACE = "default"


@dataclasses.dataclass(frozen=True)
class Column:
    """A ``kubectl get`` column."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    short_names: tuple[str, ...]
    spec_schema: type[ma.Schema]
    status_schema: type[ma.Schema]
    columns: tuple[Column, ...]
    description: str

    @property
    def singular(self) -> str:
        return self.name.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_READY = Column("Ready", ".status.ready", "boolean", "Valid, resolved and in use.")
_AGE = Column("Age", ".metadata.creationTimestamp", "date")


class KindRegistry:
    """The resource kinds, by name; registering a kind twice is an error."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}

    def register(self, kind: Kind) -> Kind:
        if kind.name in self._kinds:
            raise ValueError(f"kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> Kind:
        return self._kinds[name]

    def names(self) -> list[str]:
        return list(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[Kind]:
        return iter(self._kinds.values())


KINDS = KindRegistry()
SOURCE = KINDS.register(
    Kind(
        name="Source",
        plural="sources",
        short_names=("pfsrc",),
        spec_schema=sources.SourceSpecSchema,
        status_schema=status.SourceStatusSchema,
        columns=(
            Column("Type", ".spec.type"),
            Column("Workflow", ".spec.triggerWorkflow"),
            _READY,
            Column("Events", ".status.eventsProcessed", "integer"),
            _AGE,
        ),
        description="Where events come from (AlertManager webhook, schedule) and the "
        "Workflow they start.",
    )
)
WORKFLOW = KINDS.register(
    Kind(
        name="Workflow",
        plural="workflows",
        short_names=("pfwf",),
        spec_schema=workflows.WorkflowSpecSchema,
        status_schema=status.WorkflowStatusSchema,
        columns=(
            Column("Steps", ".status.steps", "integer"),
            Column("Last Run", ".status.lastRunTime", "date"),
            Column("Phase", ".status.lastRunPhase"),
            _READY,
            _AGE,
        ),
        description="Steps run for an event (commands, LLM investigations, "
        "conditionals) and the Sinks told about the result.",
    )
)
SINK = KINDS.register(
    Kind(
        name="Sink",
        plural="sinks",
        short_names=("pfsink",),
        spec_schema=sinks.SinkSpecSchema,
        status_schema=status.SinkStatusSchema,
        columns=(
            Column("Type", ".spec.type"),
            _READY,
            Column("Sent", ".status.messagesSent", "integer"),
            _AGE,
        ),
        description="Where a Workflow's results go (Slack, AlertManager, stdout, webhook).",
    )
)


@dataclasses.dataclass(frozen=True)
class Resource:
    """A validated resource: identity plus normalized spec."""

    kind: str
    namespace: str
    name: str
    spec: dict[str, Any]
    generation: int = 1
    origin: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def flatten(messages: object, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"spec.steps.1.command": [...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            for sub_path, problems in flatten(value, path).items():
                flat.setdefault(sub_path, []).extend(problems)
    elif isinstance(messages, list | tuple):
        if all(isinstance(item, str) for item in messages):
            flat[prefix or "(root)"] = [str(item) for item in messages]
        else:
            for item in messages:
                for sub_path, problems in flatten(item, prefix).items():
                    flat.setdefault(sub_path, []).extend(problems)
    else:
        flat[prefix or "(root)"] = [str(messages)]
    return flat


def describe_errors(messages: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{path}: {' '.join(problems)}" for path, problems in messages.items())


def normalize(kind: str, name: str, spec: object) -> dict[str, Any]:
    """The stored form of ``spec``: validated, defaults applied, CR field names.

    Raises ``ValidationError`` whose ``messages`` map ``spec.<path>`` to problems.
    """
    if kind not in KINDS:
        raise ValidationError(
            f"kind {kind!r} is not one of {', '.join(KINDS.names())}",
            {"kind": [f"Must be one of: {', '.join(KINDS.names())}."]},
        )
    if not isinstance(spec, Mapping):
        raise ValidationError(
            f"{kind} {name}: spec must be an object", {"spec": ["Must be an object."]}
        )
    schema = KINDS.get(kind).spec_schema()
    try:
        loaded = schema.load(dict(spec))
    except ma.ValidationError as exc:
        messages = flatten(exc.messages, "spec")
        raise ValidationError(
            f"{kind} {name}: {describe_errors(messages)}", dict[str, object](messages)
        ) from exc
    normalized: dict[str, Any] = schema.dump(loaded)
    if kind == SOURCE.name:
        normalized = sources.fill_defaults(name, normalized)
    return normalized


def load_workflow(namespace: str, name: str, spec: object) -> workflow_domain.Workflow:
    """The Workflow the engine runs, from a spec of any provenance (the database).

    Validated by the same schema as ``validate`` and the controller use, then built
    by the domain's trusted ``from_spec``: a stored spec that no longer validates
    (written by an older controller, or by hand) raises ``WorkflowError`` with the
    schema's messages, each naming its field.
    """
    try:
        normalized = normalize(WORKFLOW.name, name, spec)
    except ValidationError as exc:
        problems = describe_errors(
            {
                path: [str(p) for p in (value if isinstance(value, list) else [value])]
                for path, value in exc.messages.items()
            }
        )
        raise workflow_domain.WorkflowError(f"Workflow {namespace}/{name}: {problems}") from exc
    return workflow_domain.from_spec(namespace, name, normalized)


class MetadataSchema(ma.Schema):
    class Meta:
        # kubectl output carries uid, resourceVersion, managedFields...: not ours to judge.
        unknown = ma.EXCLUDE

    name = ma.fields.String(required=True, validate=[NAME_LENGTH, NAME])
    namespace = ma.fields.String(
        load_default=DEFAULT_NAMESPACE, validate=[ma.validate.Length(max=63), NAMESPACE]
    )
    generation = ma.fields.Integer(load_default=1)


class DocumentSchema(ma.Schema):
    """A whole resource as written in a file: apiVersion, kind, metadata, spec."""

    class Meta:
        unknown = ma.RAISE

    apiVersion = ma.fields.String(
        required=True, validate=ma.validate.Equal(API_VERSION, error=f"Must be {API_VERSION}.")
    )
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(KINDS.names()))
    metadata = ma.fields.Nested(MetadataSchema, required=True)
    spec = ma.fields.Raw(required=True, metadata=describe("Checked by the kind's schema."))
    # Files written from `kubectl get -o yaml` carry a status; it is ignored.
    status = ma.fields.Raw()


def load_document(document: object, origin: str = "") -> Resource:
    """Validate a whole resource document; errors name ``metadata.name``, ``spec.x``...

    The spec is checked even when the envelope is wrong, so that one pass reports
    every problem of the document.
    """
    messages: dict[str, list[str]] = {}
    if not isinstance(document, Mapping):
        messages["(root)"] = ["Must be a mapping with apiVersion, kind, metadata, spec."]
        raise ValidationError(describe_errors(messages), dict[str, object](messages))
    envelope: dict[str, Any] = {}
    try:
        envelope = DocumentSchema().load(document)
    except ma.ValidationError as exc:
        messages.update(flatten(exc.messages))
    kind = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    spec: dict[str, Any] = {}
    if kind in KINDS and "spec" in document:
        try:
            spec = normalize(str(kind), str(name or ""), document["spec"])
        except ValidationError as exc:
            for path, problems in exc.messages.items():
                messages.setdefault(path, []).extend(problems)  # type: ignore[arg-type]
    if messages:
        raise ValidationError(describe_errors(messages), dict[str, object](messages))
    return Resource(
        kind=envelope["kind"],
        namespace=envelope["metadata"]["namespace"],
        name=envelope["metadata"]["name"],
        spec=spec,
        generation=envelope["metadata"]["generation"],
        origin=origin,
    )
