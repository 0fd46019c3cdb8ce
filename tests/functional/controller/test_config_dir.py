"""File mode: resources from a folder end up in the database, and follow the files."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.controller import app
from services.controller.configdir import ConfigDirectory
from services.controller.reconciler import Reconciler
from services.controller.secrets import folder_check
from shared.db import models
from shared.db import resources as db_resources
from shared.db.engines import make_engine, make_session_factory
from shared.domain.sources import Source
from shared.settings import DatabaseSettings
from tests.support.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

SOURCE = """\
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {{name: {name}}}
spec:
  type: webhook
  config: {{path: {path}, authentication: {{secretRef: {{name: hook, key: token}}}}}}
  triggerWorkflow: wf
"""
WORKFLOW = """\
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: a, type: cli, command: [echo, hi]}]
  sinks: [out]
"""
SINK = """\
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: out}
spec: {type: stdout}
"""


@pytest.fixture
def sessions(database_url: str) -> Iterator[sa.orm.sessionmaker[sa.orm.Session]]:
    engine = make_engine(DatabaseSettings(url=database_url))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    (folder / "hook").mkdir(parents=True)
    (folder / "hook" / "token").write_text("t0k3n\n")
    return folder


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(sessions, config_dir: Path, secrets_dir: Path) -> ConfigDirectory:  # type: ignore[no-untyped-def]
    return ConfigDirectory(Reconciler(sessions, folder_check(secrets_dir)), config_dir)


def specs(sessions, kind: str) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    with sessions() as session:
        return {name: spec for _ns, name, spec in db_resources.list_specs(session, kind)}


def write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)


def test_loads_normalized_specs(sessions, watcher: ConfigDirectory, config_dir: Path) -> None:  # type: ignore[no-untyped-def]
    write(
        config_dir,
        "all.yaml",
        SOURCE.format(name="am", path="/webhook/am") + "---\n" + WORKFLOW + "---\n" + SINK,
    )
    report = watcher.sync()
    assert (report.applied, report.errors, report.not_ready) == (3, 0, [])
    source = specs(sessions, "Source")["am"]
    assert source["config"]["rateLimit"] == {"maxWorkflowStarts": 100, "windowSeconds": 60}
    assert Source.from_spec("default", "am", source).bearer_secret is not None
    assert specs(sessions, "Workflow")["wf"]["limits"]["maxConcurrentRuns"] == 10
    assert specs(sessions, "Sink")["out"] == {"type": "stdout", "config": {"format": "text"}}
    with sessions() as session:
        origin = session.scalar(
            sa.select(models.Resource.origin).where(models.Resource.name == "am")
        )
    assert origin == str(config_dir / "all.yaml")
    # A second pass writes nothing.
    assert watcher.sync().applied == 0


def test_changes_and_removals_follow_the_files(
    sessions, watcher: ConfigDirectory, config_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    write(config_dir, "source.yaml", SOURCE.format(name="am", path="/a"))
    write(config_dir, "rest.yaml", WORKFLOW + "---\n" + SINK)
    watcher.sync()
    write(config_dir, "source.yaml", SOURCE.format(name="am", path="/b"))
    assert watcher.sync().applied == 1
    assert specs(sessions, "Source")["am"]["config"]["path"] == "/b"
    # Renaming a Source in place frees its path for the new name.
    write(config_dir, "source.yaml", SOURCE.format(name="renamed", path="/b"))
    report = watcher.sync()
    assert (report.removed, report.applied) == (1, 1)
    assert list(specs(sessions, "Source")) == ["renamed"]
    (config_dir / "rest.yaml").unlink()
    report = watcher.sync()
    assert report.removed == 2
    assert specs(sessions, "Workflow") == {}
    assert report.not_ready == ["Source default/renamed"]


def test_an_invalid_file_keeps_what_it_had(
    sessions, watcher: ConfigDirectory, config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    write(config_dir, "source.yaml", SOURCE.format(name="am", path="/a"))
    watcher.sync()
    write(config_dir, "source.yaml", SOURCE.format(name="am", path="no-slash"))
    with caplog.at_level(logging.ERROR):
        report = watcher.sync()
    assert report.errors == 1
    assert specs(sessions, "Source")["am"]["config"]["path"] == "/a"
    record = next(r for r in caplog.records if r.getMessage() == "invalid resource file")
    assert record.field == "spec.config.path"  # type: ignore[attr-defined]


def test_unresolved_references_are_reported(
    sessions,
    watcher: ConfigDirectory,
    config_dir: Path,
    secrets_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # type: ignore[no-untyped-def]
    (secrets_dir / "hook" / "token").unlink()
    write(config_dir, "source.yaml", SOURCE.format(name="am", path="/a"))
    with caplog.at_level(logging.WARNING):
        report = watcher.sync()
    assert report.not_ready == ["Source default/am"]
    # Stored anyway: the Workflow may come later; ingest answers for the missing secret.
    assert "am" in specs(sessions, "Source")
    record = next(r for r in caplog.records if r.getMessage() == "resource not ready")
    assert record.reason == "WorkflowNotFound"  # type: ignore[attr-defined]
    assert "spec.config.authentication.secretRef" in record.problem  # type: ignore[attr-defined]


def test_resources_from_the_cluster_are_left_alone(sessions, watcher: ConfigDirectory) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        db_resources.upsert(
            session, "Sink", "default", "k8s", {"type": "stdout"}, origin="kubernetes"
        )
    watcher.sync()
    assert "k8s" in specs(sessions, "Sink")


def test_status_counters_come_from_the_services_tables(sessions, secrets_dir: Path) -> None:  # type: ignore[no-untyped-def]
    reconciler = Reconciler(sessions, folder_check(secrets_dir))
    t0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
    with sessions.begin() as session:
        for minute in (1, 2):
            session.add(
                models.SourceEvent(
                    source_name="am",
                    source_type="webhook",
                    event_data={},
                    received_at=t0 + dt.timedelta(minutes=minute),
                )
            )
        session.add(models.SourceEvent(source_name="other", source_type="webhook", event_data={}))
    outcome = reconciler.apply(
        "Source",
        "default",
        "am",
        {"type": "webhook", "config": {"authentication": {"type": "none"}}},
        generation=4,
        origin="test",
    )
    assert outcome.status["eventsProcessed"] == 2
    assert outcome.status["lastEventTime"] == "2026-03-01T08:02:00Z"
    assert outcome.status["observedGeneration"] == 4
    assert outcome.ready


def conditions(outcome_status: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {c["type"]: c for c in outcome_status["conditions"]}


def test_two_sources_on_one_path_are_both_not_ready(sessions, secrets_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Neither keeps the path: both are stored, both name the other, ingest serves neither."""
    reconciler = Reconciler(sessions, folder_check(secrets_dir))
    open_spec = {
        "type": "webhook",
        "config": {"path": "/same/", "authentication": {"type": "none"}},
    }
    bearer_spec = {
        "type": "webhook",
        "config": {
            "path": "/same",
            "authentication": {"secretRef": {"name": "hook", "key": "token"}},
        },
    }
    assert reconciler.apply("Source", "a", "first", bearer_spec, generation=1, origin="x").ready
    second = reconciler.apply("Source", "b", "second", open_spec, generation=1, origin="x")
    assert not second.ready
    assert second.conflicts == (("Source", "a", "first"),)
    ready = conditions(second.status)["Ready"]
    assert ready["reason"] == "PathConflict"
    assert "/same is also claimed by Source a/first" in ready["message"]
    first = reconciler.apply("Source", "a", "first", bearer_spec, generation=1, origin="x")
    assert not first.ready
    assert "Source b/second" in conditions(first.status)["Ready"]["message"]
    with sessions() as session:
        stored = db_resources.get_spec(session, "Source", "b", "second")
    assert stored is not None
    assert stored["config"]["path"] == "/same"
    reconciler.remove("Source", "b", "second")
    assert reconciler.apply("Source", "a", "first", bearer_spec, generation=1, origin="x").ready


def test_a_path_conflict_in_the_files_is_reported_on_both_in_one_pass(  # type: ignore[no-untyped-def]
    sessions, watcher: ConfigDirectory, config_dir: Path
) -> None:
    write(config_dir, "wf.yaml", WORKFLOW + "---\n" + SINK)
    write(config_dir, "a.yaml", SOURCE.format(name="prod", path="/webhook/prod"))
    write(
        config_dir,
        "b.yaml",
        SOURCE.format(name="prod-open", path="/webhook/prod/").replace(
            "secretRef: {name: hook, key: token}", "type: none"
        ),
    )
    report = watcher.sync()
    assert report.errors == 0
    assert sorted(report.not_ready) == ["Source default/prod", "Source default/prod-open"]
    assert set(specs(sessions, "Source")) == {"prod", "prod-open"}
    (config_dir / "b.yaml").unlink()
    assert watcher.sync().not_ready == []


def test_an_empty_secret_makes_the_source_not_ready(  # type: ignore[no-untyped-def]
    watcher: ConfigDirectory, config_dir: Path, secrets_dir: Path
) -> None:
    (secrets_dir / "hook" / "token").write_text(" \n")
    write(
        config_dir,
        "all.yaml",
        SOURCE.format(name="am", path="/webhook/am") + "---\n" + WORKFLOW + "---\n" + SINK,
    )
    report = watcher.sync()
    assert report.not_ready == ["Source default/am"]
    (secrets_dir / "hook" / "token").write_text("t0k3n\n")
    assert watcher.sync().not_ready == []


def test_no_authentication_is_a_warning_not_a_failure(  # type: ignore[no-untyped-def]
    sessions, secrets_dir: Path
) -> None:
    reconciler = Reconciler(sessions, folder_check(secrets_dir))
    spec = {"type": "webhook", "config": {"authentication": {"type": "none"}}}
    outcome = reconciler.apply("Source", "default", "open", spec, generation=1, origin="x")
    assert outcome.ready
    authenticated = conditions(outcome.status)["Authenticated"]
    assert (authenticated["status"], authenticated["reason"]) == ("False", "AuthenticationDisabled")
    assert "/webhook/open" in authenticated["message"]


def test_a_source_without_authentication_is_invalid(sessions, secrets_dir: Path) -> None:  # type: ignore[no-untyped-def]
    reconciler = Reconciler(sessions, folder_check(secrets_dir))
    outcome = reconciler.apply(
        "Source", "default", "am", {"type": "webhook"}, generation=1, origin="x"
    )
    assert not outcome.ready
    valid = conditions(outcome.status)["Valid"]
    assert "authentication: {type: none}" in valid["message"]


def test_run_files_picks_up_changes(
    database_url: str, make_settings, tmp_path: Path, config_dir: Path, secrets_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    config = make_settings(
        PF_DATABASE_URL=database_url,
        PF_SECRETS_DIR=str(secrets_dir),
        PF_CONTROLLER_POLL_INTERVAL="0.05",
    )
    sessions = make_session_factory(make_engine(config.database))
    write(config_dir, "wf.yaml", WORKFLOW)
    stop = threading.Event()
    thread = threading.Thread(target=app.run_files, args=(config, config_dir, stop), daemon=True)
    thread.start()
    try:
        wait_for(lambda: "wf" in specs(sessions, "Workflow"))
        write(config_dir, "sink.yaml", SINK)
        wait_for(lambda: "out" in specs(sessions, "Sink"))
        (config_dir / "wf.yaml").unlink()
        wait_for(lambda: "wf" not in specs(sessions, "Workflow"))
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_the_examples_load(sessions, secrets_dir: Path) -> None:  # type: ignore[no-untyped-def]
    watcher = ConfigDirectory(Reconciler(sessions, folder_check(EXAMPLES / "secrets")), EXAMPLES)
    report = watcher.sync()
    assert (report.errors, report.not_ready) == (0, [])
    assert specs(sessions, "Source")["alertmanager"]["config"]["path"] == "/webhook/alertmanager"
