"""A webhook sent once ingest says it is ready finds its Source.

AlertManager does not retry a 4xx, so a 404 is a lost notification. Found with
``punchingfist run``: ten posts right after ``/readyz`` said 200 were answered
``[401, 404, 404, 401, ...]``, because ingest was ready before the controller had
stored the Sources and each gunicorn worker kept its empty copy for
``PF_RESOURCE_REFRESH_SECONDS``. The same window followed every new Source.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.ingest import catalog as ingest_catalog
from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.ingest import realserver
from tests.functional.ingest.conftest import TOKEN, source_spec
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(120)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return 0, {}


def wait_ready(port: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = readyz(port)
        if status == 200:
            return body
        time.sleep(0.02)
    raise TimeoutError(f"/readyz not 200 within {timeout}s")


def test_run_serves_every_webhook_once_ready(tmp_path: Path) -> None:
    port = free_port()
    env = realserver.env_for(
        tmp_path,
        PF_SECRETS_DIR=str(EXAMPLES / "secrets"),
        PF_INGEST_BIND=f"127.0.0.1:{port}",
        PF_BROKER_URL=f"sqla+sqlite:///{tmp_path}/broker.db",
    )
    argv = [*realserver.PUNCHINGFIST, "run", "--config-dir", str(EXAMPLES)]
    with (tmp_path / "run.log").open("w") as log:
        child = subprocess.Popen(argv, env=env, stderr=log, stdout=log)
        try:
            body = wait_ready(port)
            # Tokenless: 401 means the Source was found, 404 that it was not.
            statuses = [realserver.post(port, "/webhook/alertmanager", None)[0] for _ in range(10)]
        finally:
            child.terminate()
            child.wait(timeout=30)
    assert statuses == [401] * 10, statuses
    assert body["checks"]["sources"] == "ok"
    assert body["webhookPaths"] == 1


def test_a_source_stored_after_ingest_read_the_sources_is_served_at_once(tmp_path: Path) -> None:
    """A long cache (60 s) no longer hides a new Source: a miss looks again."""
    (tmp_path / "secrets" / "am").mkdir(parents=True)
    (tmp_path / "secrets" / "am" / "token").write_text(TOKEN)
    port = free_port()
    env = realserver.env_for(
        tmp_path,
        PF_SECRETS_DIR=str(tmp_path / "secrets"),
        PF_RESOURCE_REFRESH_SECONDS="60",
        PF_INGEST_WORKERS="1",
    )
    argv = ["ingest", "--bind", f"127.0.0.1:{port}"]
    with realserver.serving(argv, env, port, tmp_path / "ingest.log"):
        body = wait_ready(port)  # the worker has read the Sources: none
        assert body["webhookPaths"] == 0
        assert realserver.post(port, "/webhook/other", f"Bearer {TOKEN}")[0] == 404
        engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/pf.db"))
        with make_session_factory(engine).begin() as session:
            resources.upsert(session, "Source", "default", "alertmanager", source_spec())
        engine.dispose()
        status, answer, _ = realserver.post(port, "/webhook/alertmanager", f"Bearer {TOKEN}")
        assert status == 200, answer
        assert answer["new"] == 1


def test_misses_read_the_sources_at_most_once_per_path_per_second(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[float] = []
    list_specs: Callable[..., Any] = resources.list_specs

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(now[0])
        return list_specs(*args, **kwargs)

    monkeypatch.setattr(resources, "list_specs", counting)
    now = [100.0]
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    sources = ingest_catalog.SourceCatalog(
        make_session_factory(engine), refresh_seconds=60, clock=lambda: now[0]
    )
    assert sources.by_path("/webhook/a") is None  # the first read, no second one
    assert len(reads) == 1
    now[0] += 0.1
    assert sources.by_path("/webhook/a") is None  # missed 0.1 s ago: no read
    assert sources.by_path("/webhook/b") is None  # another path: read
    assert len(reads) == 2
    for _ in range(50):
        sources.by_path("/webhook/b")
    assert len(reads) == 2
    now[0] += ingest_catalog.MISS_RELOAD_SECONDS
    with make_session_factory(engine).begin() as session:
        resources.upsert(session, "Source", "default", "a", source_spec(path="/webhook/a"))
    found = sources.by_path("/webhook/a")
    assert found is not None
    assert found.name == "a"
    assert len(reads) == 3
    for _ in range(5):  # a known path costs no read
        assert sources.by_path("/webhook/a") is not None
    assert len(reads) == 3
    engine.dispose()
