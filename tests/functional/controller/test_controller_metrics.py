"""The controller's /metrics: reconciliations by kind and result, served by a real
``punchingfist controller --config-dir`` process, and errors counted by kind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError

from services.controller import metrics as controller_metrics
from services.controller.reconciler import Reconciler
from services.controller.secrets import folder_check
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.controller.test_config_dir import SINK, SOURCE, WORKFLOW, write
from tests.support.ports import free_port
from tests.support.scrape import Samples, scrape
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def controller(database_url: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(config folder, metrics URL) of a controller process in file mode."""
    config = tmp_path / "config"
    config.mkdir()
    secrets = tmp_path / "secrets"
    (secrets / "hook").mkdir(parents=True)
    (secrets / "hook" / "token").write_text("t0k3n\n")
    write(config, "sink.yaml", SINK)
    write(config, "workflow.yaml", WORKFLOW)
    write(config, "source.yaml", SOURCE.format(name="alerts", path="/webhook/alerts"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PF_")}
    env.update(
        {
            "PF_DATABASE_URL": database_url,
            "PF_SECRETS_DIR": str(secrets),
            "PF_CONTROLLER_METRICS_BIND": f"127.0.0.1:{port}",
            "PF_CONTROLLER_POLL_INTERVAL": "0.1",
            # No periodic refresh passes: every pass in this test is a file change.
            "PF_CONTROLLER_STATUS_INTERVAL": "3600",
            "PF_LOG_FORMAT": "json",
        }
    )
    ready = tmp_path / "ready"
    log = (tmp_path / "controller.log").open("wb")
    argv = ["controller", "--config-dir", str(config), "--ready-file", str(ready)]
    child = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *argv],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(ready.exists, 30, "the controller's first pass")
        yield config, f"http://127.0.0.1:{port}/metrics"
    finally:
        child.terminate()
        child.wait(10)
        log.close()


def reconciles(samples: Samples, kind: str, result: str) -> float:
    return samples.value(
        "punchingfist_controller_reconciles_total", kind=kind, mode="files", result=result
    )


def test_reconciliations_by_kind_and_result(controller: tuple[Path, str]) -> None:
    config, url = controller
    first = scrape(url)
    assert [reconciles(first, kind, "ready") for kind in ("Sink", "Workflow", "Source")] == [1] * 3
    assert first.total("punchingfist_controller_reconciles_total") == 3
    assert (
        first.value(
            "punchingfist_controller_reconcile_duration_seconds_count", kind="Source", mode="files"
        )
        == 1
    )

    # A Source whose token Secret does not exist: not ready. Every pass judges every
    # resource again, so the others are counted a second time.
    write(
        config,
        "orphan.yaml",
        SOURCE.format(name="orphan", path="/webhook/orphan").replace("name: hook", "name: none"),
    )
    second = wait_for(
        lambda: (s := scrape(url)).total("punchingfist_controller_reconciles_total") == 7 and s,
        30,
        "the second pass to be counted",
    )
    assert reconciles(second, "Source", "not_ready") == 1
    assert reconciles(second, "Source", "ready") == 2
    assert reconciles(second, "Sink", "ready") == 2
    assert reconciles(second, "Workflow", "ready") == 2

    # The Sink goes away: removed, and the Workflow that names it is not ready.
    (config / "sink.yaml").unlink()
    third = wait_for(
        lambda: (
            (s := scrape(url)).value(
                "punchingfist_controller_reconciles_total",
                kind="Sink",
                mode="files",
                result="removed",
            )
            == 1
            and reconciles(s, "Workflow", "not_ready") == 1
            and s
        ),
        30,
        "the removal to be counted",
    )
    assert reconciles(third, "Sink", "ready") == 2
    assert third.total("punchingfist_controller_reconcile_errors_total") == 0


def test_a_reconciliation_that_raises_is_counted_as_an_error_of_its_kind(tmp_path: Path) -> None:
    # A database the controller cannot open: the reconciliation raises (kopf retries
    # it in a cluster) and the error is counted under the resource's kind.
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/missing/dir/db.sqlite"))
    registry = CollectorRegistry()
    metrics = controller_metrics.ControllerMetrics(registry)
    reconciler = Reconciler(
        make_session_factory(engine),
        folder_check(tmp_path),
        mode=controller_metrics.KUBERNETES,
        metrics=metrics,
    )
    with pytest.raises(OperationalError):
        reconciler.apply("Sink", "default", "out", {"type": "stdout"}, generation=1, origin="k8s")
    with pytest.raises(OperationalError):
        reconciler.remove("Workflow", "default", "wf")
    engine.dispose()
    value = registry.get_sample_value
    labels = {"mode": "kubernetes", "error": "OperationalError"}
    assert value("punchingfist_controller_reconcile_errors_total", {"kind": "Sink", **labels}) == 1
    assert (
        value("punchingfist_controller_reconcile_errors_total", {"kind": "Workflow", **labels}) == 1
    )
    assert (
        value(
            "punchingfist_controller_reconciles_total",
            {"kind": "Sink", "mode": "kubernetes", "result": "error"},
        )
        == 1
    )
