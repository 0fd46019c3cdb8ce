"""The read API (alerts, annotations, step output) needs its own bearer token.

It shares the listener AlertManager must reach, so without PF_API_TOKEN_FILE it is
off (403); with it, a request needs ``Authorization: Bearer <token>`` (401 with
``WWW-Authenticate`` otherwise). Health, readiness and metrics stay open, and an
empty token file stops ``punchingfist ingest`` at start.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.ingest.app import create_app
from shared.errors import ConfigError
from tests.functional.ingest.conftest import API_TOKEN, TOKEN, load_fixture, source_spec
from tests.functional.ingest.ingestserver import ingest_env, running_ingest


@pytest.mark.redis
def test_read_api_needs_the_token_through_gunicorn(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    with running_ingest(database_url, tmp_path, redis_url, {"alertmanager": source_spec()}) as pf:
        assert pf.post(load_fixture("01-firing-single.json")).status == 200
        for token in (None, "", "wrong", API_TOKEN + "x", TOKEN):
            for path in ("/api/v1/alerts", "/api/v1/alerts/00000000-0000-0000-0000-000000000000"):
                answer = pf.get(path, token=token)
                assert answer.status == 401, (token, path)
                assert "bearer token" in answer.body["error"]
        listed = pf.get("/api/v1/alerts")
        assert listed.status == 200
        assert len(listed.body["items"]) == 1
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert pf.request("GET", open_path).status == 200, open_path
        # Item 5: a NUL in a query (PostgreSQL refuses it) and a naive cursor are 400s.
        assert pf.get("/api/v1/alerts?source=%00").status == 400
        naive = base64.urlsafe_b64encode(
            b"2026-11-26T04:02:39|00000000-0000-0000-0000-000000000000"
        ).decode()
        answer = pf.get(f"/api/v1/alerts?cursor={naive}")
        assert answer.status == 400
        assert "cursor" in answer.body["error"]
        # A misspelt or repeated filter is refused, not ignored (which listed every alert).
        answer = pf.get("/api/v1/alerts?state=resolved")
        assert answer.status == 400
        assert "unknown query parameter 'state'" in answer.body["error"]
        answer = pf.get("/api/v1/alerts?status=resolved&status=firing")
        assert answer.status == 400
        assert "'status' given more than once" in answer.body["error"]
        assert pf.get("/api/v1/alerts?status=resolved").body["items"] == []
    assert "Traceback" not in pf.log()


@pytest.mark.redis
def test_without_a_token_file_the_read_api_is_off(
    sqlite_url: str, tmp_path: Path, redis_url: str
) -> None:
    sources = {"alertmanager": source_spec()}
    with running_ingest(sqlite_url, tmp_path, redis_url, sources, PF_API_TOKEN_FILE="") as pf:
        answer = pf.get("/api/v1/alerts")
        assert answer.status == 403
        assert "PF_API_TOKEN_FILE" in answer.body["error"]
        # Webhooks are unaffected.
        assert pf.post(load_fixture("01-firing-single.json")).status == 200
    assert "read API disabled" in pf.log()


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_token_file_stops_ingest_at_start(
    sqlite_url: str, tmp_path: Path, content: str
) -> None:
    env = ingest_env(sqlite_url, tmp_path, "memory://")
    Path(env["PF_API_TOKEN_FILE"]).write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", "--bind", "127.0.0.1:0"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "PF_API_TOKEN_FILE" in done.stderr
    assert "the file is empty" in done.stderr


def test_flask_app_answers_401_with_a_challenge(client: Any) -> None:
    answer = client.get("/api/v1/alerts", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="punchingfist"'
    assert client.get("/api/v1/alerts").status_code == 200


def test_unreadable_token_file_is_a_config_error(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    settings = make_settings(PF_API_TOKEN_FILE=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot be read"):
        create_app(settings)
