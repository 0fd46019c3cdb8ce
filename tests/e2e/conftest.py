"""End-to-end fixtures: ``pipeline_for(scenario)`` starts the whole system (see harness.py).

Every test here is marked ``e2e`` (``make e2e`` runs only them; ``make test`` runs them
with the rest). A test that fails gets the tail of every process's log in its report,
and the folder with the full logs is kept and named there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.e2e.harness import POSTGRES_ADMIN_URL, Pipeline, missing_binaries

HERE = Path(__file__).parent
# Where a failed run's logs are kept (the test's temporary folder is reused by pytest).
KEPT_LOGS = Path(os.environ.get("PF_E2E_LOG_DIR", "/tmp/punchingfist-e2e-logs"))
LOG_TAIL = 4000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    pipelines: list[Pipeline] = getattr(item, "_e2e_pipelines", [])
    if report.failed and pipelines:
        item._e2e_failed = True  # type: ignore[attr-defined]
        for pipeline in pipelines:
            kept = KEPT_LOGS / f"{item.name}-{os.getpid()}" / pipeline.scenario
            report.sections.append(
                ("e2e logs", f"full logs of {pipeline.scenario} are kept in {kept}")
            )
            for path in pipeline.log_files():
                tail = path.read_text(errors="replace")[-LOG_TAIL:]
                report.sections.append((f"e2e {pipeline.scenario} {path.name} (tail)", tail))
    return report


def _unavailable() -> str | None:
    missing = missing_binaries()
    if missing:
        return f"not installed: {', '.join(missing)} (.ci/run installs them)"
    try:
        engine = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL))
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError:
        return f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}"
    return None


@pytest.fixture
def pipeline_for(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Pipeline]]:
    """Start the scenario's pipeline; every one started is closed after the test."""
    why = _unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    started: list[Pipeline] = []
    request.node._e2e_pipelines = started

    def make(scenario: str, **options: Any) -> Pipeline:
        pipeline = Pipeline(scenario, tmp_path / scenario, **options)
        started.append(pipeline)
        return pipeline.start()

    yield make
    failed = getattr(request.node, "_e2e_failed", False)
    for pipeline in started:
        try:
            pipeline.close()
        finally:
            if failed:
                kept = KEPT_LOGS / f"{request.node.name}-{os.getpid()}" / pipeline.scenario
                shutil.copytree(pipeline.logs, kept, dirs_exist_ok=True)
