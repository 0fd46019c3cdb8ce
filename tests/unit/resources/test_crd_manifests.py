"""The CRD manifests: generated from the schemas, valid, structural, and enforcing.

The committed files must equal what ``shared.resources.crds`` renders (``make crds``).
Beyond ``kubernetes-validate --strict`` (which checks the manifest against the
CustomResourceDefinition schema), these tests do what the API server would do with
a resource: apply the CRD's defaults, check it against the OpenAPI schema, and
evaluate every CEL rule with a CEL interpreter.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.resources import crds, files, schemas

ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = ROOT / "k8s" / "crds"
EXAMPLES = [ROOT / "examples", ROOT / "examples" / "cluster"]
CEL = celpy.Environment()


def crd_schema(kind: str) -> dict[str, Any]:
    document = yaml.safe_load((CRD_DIR / f"{schemas.KINDS.get(kind).crd_name}.yaml").read_text())
    version = document["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _cel_value(value: Any) -> Any:
    # Kubernetes makes CEL keywords accessible as __name__.
    if isinstance(value, dict):
        return {
            (f"__{k}__" if k in crds._CEL_RESERVED else k): _cel_value(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_cel_value(v) for v in value]
    return value


def walk(
    schema: dict[str, Any], value: Any, path: str = ""
) -> Iterator[tuple[str, dict[str, Any], Any]]:
    yield path, schema, value
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                yield from walk(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from walk(schema["additionalProperties"], child, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, child in enumerate(value):
            yield from walk(schema["items"], child, f"{path}[{index}]")


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it (defaults, then their children)."""
    if isinstance(value, dict):
        for key, child_schema in schema.get("properties", {}).items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
            if key in value:
                value[key] = apply_defaults(child_schema, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def admission_errors(document: dict[str, Any]) -> list[str]:
    """What the API server would refuse in ``document``: schema errors, then CEL rules."""
    schema = crd_schema(document["kind"])
    document = apply_defaults(schema, copy.deepcopy(document))
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft4Validator(schema).iter_errors(document)
    ]
    if errors:
        return errors
    for path, node, value in walk(schema, document):
        for rule in node.get("x-kubernetes-validations", []):
            program = CEL.program(CEL.compile(rule["rule"]))
            if not program.evaluate({"self": celpy.json_to_cel(_cel_value(value))}):
                errors.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    return errors


def test_manifests_are_what_the_schemas_render() -> None:
    rendered = crds.render()
    on_disk = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}
    assert sorted(on_disk) == sorted(rendered), "run `make crds`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"k8s/crds/{name} is stale: run `make crds`"


def test_generator_writes_the_files(tmp_path: Path) -> None:
    assert crds.main([str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == crds.render()


@pytest.mark.parametrize("name", sorted(crds.render()))
def test_kubernetes_validate_strict(name: str) -> None:
    for document in yaml.safe_load_all((CRD_DIR / name).read_text()):
        if document["kind"] != "CustomResourceDefinition":
            continue  # the peering object: its CRD is in the same file
        kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_kubernetes_validate_command_line() -> None:
    command = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert command is not None
    crd_files = [str(CRD_DIR / f"{kind.crd_name}.yaml") for kind in schemas.KINDS]
    result = subprocess.run(
        [command, "--strict", "--quiet", *crd_files], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


@pytest.mark.parametrize("kind", schemas.KINDS.names())
def test_schemas_are_structural(kind: str) -> None:
    for path, node in _nodes(crd_schema(kind)):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        if "default" in node:
            jsonschema.Draft4Validator(node).validate(node["default"])
        for rule in node.get("x-kubernetes-validations", []):
            CEL.compile(rule["rule"])  # parses


@pytest.mark.parametrize("kind", schemas.KINDS.names())
def test_names_columns_and_status(kind: str) -> None:
    document = yaml.safe_load((CRD_DIR / f"{schemas.KINDS.get(kind).crd_name}.yaml").read_text())
    spec = document["spec"]
    assert spec["group"] == "punchingfist.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["punchingfist"]
    assert spec["names"]["shortNames"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    expected = {
        "Source": ["Type", "Workflow", "Ready", "Events", "Age"],
        "Workflow": ["Steps", "Last Run", "Phase", "Ready", "Age"],
        "Sink": ["Type", "Ready", "Sent", "Age"],
    }[kind]
    assert columns == expected
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        top, _, rest = column["jsonPath"].lstrip(".").partition(".")
        if top == "status":
            assert rest in status, column


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in files.yaml_files(EXAMPLES):
        for index, document in enumerate(yaml.safe_load_all(path.read_text()), start=1):
            found.append((f"{path.relative_to(ROOT)}#{index}", document))
    return found


@pytest.mark.parametrize(
    ("where", "document"), example_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_examples_pass_the_crd_schemas(where: str, document: dict[str, Any]) -> None:
    assert admission_errors(document) == []


@pytest.mark.parametrize(
    ("where", "document"), example_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_crd_defaults_agree_with_the_schemas(where: str, document: dict[str, Any]) -> None:
    # What the API server stores (CRD defaults applied) normalizes to the same spec.
    schema = crd_schema(document["kind"])
    defaulted = apply_defaults(schema, copy.deepcopy(document))
    name = document["metadata"]["name"]
    assert schemas.normalize(document["kind"], name, defaulted["spec"]) == schemas.normalize(
        document["kind"], name, document["spec"]
    )


def resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": schemas.API_VERSION,
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        (
            "Workflow",
            {"steps": [{"name": "a", "type": "cli"}]},
            ".spec.steps[0].command: a cli step needs command",
        ),
        (
            "Workflow",
            {"steps": [{"name": "a", "type": "agent"}]},
            ".spec.steps[0].goal: an agent step needs goal",
        ),
        (
            "Workflow",
            {"steps": [{"name": "a", "type": "agent", "goal": "g", "shell": True}]},
            ".spec.steps[0].shell: shell is only for cli steps",
        ),
        (
            "Workflow",
            {"steps": [{"name": "a", "type": "cli", "command": ["x"], "else": {}}]},
            ".spec.steps[0].else: else is only for conditional steps",
        ),
        ("Workflow", {"steps": [{"name": "a", "type": "magic"}]}, "spec.steps.0.type:"),
        (
            "Workflow",
            {"steps": [{"name": "a", "type": "cli", "command": ["x"], "timeout": "5 minutes"}]},
            "spec.steps.0.timeout:",
        ),
        (
            "Workflow",
            {
                "steps": [
                    {
                        "name": "a",
                        "type": "cli",
                        "command": ["x"],
                        "timeout": "5m",
                        "timeoutMinutes": 5,
                    }
                ]
            },
            ".spec.steps[0].timeoutSeconds: give at most one of timeout, timeoutMinutes, "
            "timeoutSeconds",
        ),
        ("Workflow", {"steps": []}, "spec.steps:"),
        ("Source", {"type": "schedule"}, ".spec.config: a schedule Source needs config.cron"),
        ("Source", {"type": "chat"}, ".spec.type: chat Sources are reserved"),
        (
            "Source",
            {"type": "schedule", "config": {"cron": "* * * * *", "path": "/x"}},
            ".spec.config: config.path is only for webhook Sources",
        ),
        (
            "Source",
            {"type": "webhook", "config": {"rateLimit": {"windowSeconds": 0}}},
            "spec.config.rateLimit.windowSeconds:",
        ),
        (
            "Source",
            {"type": "webhook", "config": {"path": "/x"}},
            ".spec.config: a webhook Source needs config.authentication",
        ),
        (
            "Source",
            {"type": "webhook", "config": {"authentication": {"type": "bearer"}}},
            ".spec.config.authentication.secretRef: bearer authentication needs secretRef",
        ),
        (
            "Source",
            {
                "type": "webhook",
                "config": {
                    "authentication": {"type": "none", "secretRef": {"name": "a", "key": "b"}}
                },
            },
            ".spec.config.authentication.secretRef: bearer authentication needs secretRef",
        ),
        (
            "Sink",
            {"type": "slack", "config": {"channel": "#x"}},
            ".spec.config: a slack Sink needs config.tokenSecretRef",
        ),
        (
            "Sink",
            {"type": "stdout", "config": {"url": "http://x"}},
            ".spec.config: config.url is only for alertmanager, webhook Sinks",
        ),
        ("Sink", {"type": "pagerduty"}, "spec.type:"),
    ],
)
def test_bad_resources_are_refused_naming_the_field(
    kind: str, spec: dict[str, Any], expected: str
) -> None:
    errors = admission_errors(resource(kind, spec))
    assert any(error.startswith(expected) for error in errors), errors
