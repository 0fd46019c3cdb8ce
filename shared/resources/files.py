"""Resources from YAML files: for ``punchingfist validate`` and the file-mode controller.

A file may hold several documents (``---``). Every problem is collected rather than
raised at the first one, with the file, the document's position and the field path,
so that one run of ``validate`` shows everything to fix. Cross-resource rules that
need the whole set (duplicate names, two webhooks on one path) are checked here too.

References between resources (a Source's Workflow, a Workflow's Sinks) are checked
by ``unresolved_references`` with the rules the controller reports in its
``Resolved`` condition (``checks.unresolved``), over the files given together.
``validate`` calls it; the file-mode controller does not, because there a reference
problem does not stop a resource from being stored (it is reported in status).

Two Sources on one path are reported in ``conflicts``, not dropped: ``validate``
refuses the set, while the file-mode controller stores both and reports both not
ready (ingest then serves neither), exactly as it would in a cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from shared.errors import ValidationError
from shared.resources import checks, schemas

SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class FileError:
    """One problem in one document: ``path`` is the field (``spec.steps.1.command``)."""

    file: str
    document: int
    path: str
    message: str
    resource: str = ""

    def __str__(self) -> str:
        where = f"{self.file}#{self.document}" if self.document else self.file
        what = f" {self.resource}" if self.resource else ""
        return f"{where}{what}: {self.path}: {self.message}"


@dataclasses.dataclass
class Loaded:
    resources: list[schemas.Resource] = dataclasses.field(default_factory=list)
    errors: list[FileError] = dataclasses.field(default_factory=list)
    # Files that could not be used at all or that hold an invalid resource; the
    # file-mode controller keeps what it loaded earlier from these.
    failed_files: set[str] = dataclasses.field(default_factory=set)
    # (kind, namespace, name) of every document that says who it is, valid or not:
    # a reference to an invalid resource is reported once, as that resource's error.
    named: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)
    # Webhook paths claimed by more than one Source (one entry per Source).
    conflicts: list[FileError] = dataclasses.field(default_factory=list)


def yaml_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The YAML files among ``paths``.

    A folder contributes the YAML files directly in it, not those of subfolders,
    like ``kubectl apply -f DIR``: a config folder can then keep other sets (and
    its ``secrets/``) below it without loading them.
    """
    for path in paths:
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix in SUFFIXES and not child.name.startswith("."):
                    yield child
        else:
            yield path


def _identity(document: object) -> tuple[str, str, str] | None:
    if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
        return None
    metadata = document["metadata"]
    kind, name = document.get("kind"), metadata.get("name")
    namespace = metadata.get("namespace") or schemas.DEFAULT_NAMESPACE
    if isinstance(kind, str) and isinstance(name, str) and isinstance(namespace, str):
        return (kind, namespace, name)
    return None


def _document_label(document: object) -> str:
    if isinstance(document, dict):
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return f"{document.get('kind', '?')} {name or '?'}"
    return ""


def load_files(paths: Iterable[Path]) -> Loaded:
    loaded = Loaded()
    for path in yaml_files(paths):
        origin = str(path)
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except OSError as exc:
            loaded.errors.append(FileError(origin, 0, "(file)", f"cannot read: {exc}"))
            loaded.failed_files.add(origin)
            continue
        except yaml.YAMLError as exc:
            loaded.errors.append(FileError(origin, 0, "(file)", f"not YAML: {exc}"))
            loaded.failed_files.add(origin)
            continue
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            identity = _identity(document)
            if identity is not None:
                loaded.named.add(identity)
            try:
                loaded.resources.append(schemas.load_document(document, origin=origin))
            except ValidationError as exc:
                loaded.failed_files.add(origin)
                for field_path, problems in exc.messages.items():
                    message = (
                        " ".join(map(str, problems))
                        if isinstance(problems, list)
                        else str(problems)
                    )
                    loaded.errors.append(
                        FileError(origin, index, field_path, message, _document_label(document))
                    )
    _check_set(loaded)
    return loaded


def _check_set(loaded: Loaded) -> None:
    seen: dict[tuple[str, str, str], schemas.Resource] = {}
    unique: list[schemas.Resource] = []
    for resource in loaded.resources:
        earlier = seen.get(resource.key)
        if earlier is not None:
            loaded.errors.append(
                FileError(
                    resource.origin,
                    0,
                    "metadata.name",
                    f"{resource} is also defined in {earlier.origin}.",
                    str(resource),
                )
            )
            loaded.failed_files.add(resource.origin)
            continue
        seen[resource.key] = resource
        unique.append(resource)
    claims = checks.path_claims(unique)
    for resource in unique:
        conflict = checks.path_conflict(resource, claims)
        if conflict is not None:
            loaded.conflicts.append(
                FileError(resource.origin, 0, "spec.config.path", conflict.message, str(resource))
            )
    loaded.resources = unique


def unresolved_references(loaded: Loaded) -> list[FileError]:
    """References among ``loaded`` that do not resolve, naming file and field.

    Secrets are not read offline; their references are the controller's to check.
    """

    def exists(kind: str, namespace: str, name: str) -> bool:
        return (kind, namespace, name) in loaded.named

    errors = []
    for resource in loaded.resources:
        for problem in checks.unresolved(resource, exists, lambda *_: None):
            path, _, message = problem.message.partition(": ")
            message += " (references are checked among the files given together)"
            errors.append(FileError(resource.origin, 0, path, message, str(resource)))
    return errors
