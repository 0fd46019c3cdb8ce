"""Loading resources from YAML files: every problem, with file, document and field."""

from __future__ import annotations

from pathlib import Path

from shared.resources import files

SOURCE = """\
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: %s}
spec: {type: webhook, config: {path: %s, authentication: {type: none}}}
"""
WORKFLOW = """\
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: wf, namespace: ops}
spec:
  steps: [{name: a, type: cli, command: [echo]}]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_loads_every_document_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SOURCE % ("one", "/a") + "---\n" + WORKFLOW)
    write(tmp_path, "b.yml", SOURCE % ("two", "/b"))
    write(tmp_path, "notes.txt", "not yaml: [")
    loaded = files.load_files([tmp_path])
    assert loaded.errors == []
    assert sorted(map(str, loaded.resources)) == [
        "Source default/one",
        "Source default/two",
        "Workflow ops/wf",
    ]
    assert {r.origin for r in loaded.resources} == {
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yml"),
    }


def test_folders_are_not_walked(tmp_path: Path) -> None:
    write(tmp_path, "sub/a.yaml", SOURCE % ("one", "/a"))
    assert files.load_files([tmp_path]).resources == []
    assert len(files.load_files([tmp_path / "sub"]).resources) == 1


def test_errors_carry_file_document_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        WORKFLOW
        + "---\n"
        + "apiVersion: punchingfist.io/v1\nkind: Sink\nmetadata: {name: s}\n"
        + "spec: {type: stdout, config: {format: xml}}\n",
    )
    loaded = files.load_files([path])
    assert [r.name for r in loaded.resources] == ["wf"]
    assert [(e.document, e.path) for e in loaded.errors] == [
        (2, "apiVersion"),
        (2, "spec.config.format"),
    ]
    text = str(loaded.errors[1])
    assert text.startswith(f"{path}#2 Sink s: spec.config.format:")
    assert loaded.failed_files == {str(path)}


def test_unparsable_yaml_is_one_error(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "kind: [unclosed\n")
    loaded = files.load_files([path])
    assert [e.path for e in loaded.errors] == ["(file)"]
    assert "not YAML" in loaded.errors[0].message


def test_not_a_mapping(tmp_path: Path) -> None:
    loaded = files.load_files([write(tmp_path, "list.yaml", "- a\n- b\n")])
    assert [e.path for e in loaded.errors] == ["(root)"]


def test_same_resource_twice_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SOURCE % ("one", "/a"))
    write(tmp_path, "b.yaml", SOURCE % ("one", "/b"))
    loaded = files.load_files([tmp_path])
    assert [r.origin for r in loaded.resources] == [str(tmp_path / "a.yaml")]
    assert [(e.file, e.path) for e in loaded.errors] == [
        (str(tmp_path / "b.yaml"), "metadata.name")
    ]


def test_two_webhooks_on_one_path_are_both_conflicts(tmp_path: Path) -> None:
    """Not errors that drop one: the controller stores both and reports both."""
    write(tmp_path, "a.yaml", SOURCE % ("one", "/same"))
    write(tmp_path, "b.yaml", SOURCE % ("two", "/same/"))
    loaded = files.load_files([tmp_path])
    assert [r.name for r in loaded.resources] == ["one", "two"]
    assert loaded.errors == []
    assert loaded.failed_files == set()
    assert [(e.resource, e.path) for e in loaded.conflicts] == [
        ("Source default/one", "spec.config.path"),
        ("Source default/two", "spec.config.path"),
    ]
    assert "Source default/two" in loaded.conflicts[0].message
    assert "Source default/one" in loaded.conflicts[1].message


def test_references_among_the_files_and_an_invalid_target_is_reported_once(
    tmp_path: Path,
) -> None:
    source = SOURCE.replace("metadata: {name: %s}", "metadata: {name: one, namespace: ops}")
    source = source.replace(
        "config: {path: %s, authentication: {type: none}}",
        "config: {path: /a, authentication: {type: none}}, triggerWorkflow: wf",
    )
    write(tmp_path, "a.yaml", source)
    loaded = files.load_files([tmp_path])
    assert loaded.errors == []
    assert [str(e) for e in files.unresolved_references(loaded)] == [
        f"{tmp_path / 'a.yaml'} Source ops/one: spec.triggerWorkflow: no Workflow ops/wf. "
        "(references are checked among the files given together)"
    ]
    # The Workflow is there but invalid: its own error says why, the Source's does not.
    write(tmp_path, "b.yaml", WORKFLOW.replace("command: [echo]", "command: 'echo'"))
    loaded = files.load_files([tmp_path])
    assert [e.path for e in loaded.errors] == ["spec.steps.0.command"]
    assert files.unresolved_references(loaded) == []
    write(tmp_path, "b.yaml", WORKFLOW)
    assert files.unresolved_references(files.load_files([tmp_path])) == []
