"""`punchingfist ingest` as a real gunicorn server in a subprocess, and a client for it.

The server gets its own secrets folder (webhook token ``TOKEN`` at ``am/token``),
an API token file (``API_TOKEN``), the given Sources in the database and a log file;
``Ingest.log()`` shows what it wrote, for asserting that no request raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import API_TOKEN, TOKEN
from tests.support.ports import free_port


@dataclasses.dataclass
class Answer:
    status: int
    body: Any
    seconds: float


@dataclasses.dataclass
class Ingest:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer:
        request = urllib.request.Request(
            self.url + path, data=data, headers=dict(headers or {}), method=method
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        elapsed = time.monotonic() - started
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return Answer(status, body, elapsed)

    def post(
        self,
        body: Any,
        path: str = "/webhook/alertmanager",
        token: str | None = TOKEN,
        content_type: str = "application/json",
    ) -> Answer:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", path, data, headers)

    def get(self, path: str, token: str | None = API_TOKEN) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.request("GET", path, headers=headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_healthy(ingest: Ingest, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ingest.process.poll() is not None:
            raise RuntimeError(f"ingest exited with {ingest.process.returncode}:\n{ingest.log()}")
        try:
            with urllib.request.urlopen(ingest.url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"ingest did not answer within {timeout}s:\n{ingest.log()}")


def put_sources(database_url: str, sources: Mapping[str, Mapping[str, Any]]) -> None:
    engine = make_engine(DatabaseSettings(url=database_url))
    with make_session_factory(engine).begin() as session:
        for name, spec in sources.items():
            resources.upsert(session, "Source", "default", name, dict(spec))
    engine.dispose()


def ingest_env(database_url: str, workdir: Path, broker_url: str, **extra: str) -> dict[str, str]:
    secret = workdir / "secrets" / "am"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "token").write_text(TOKEN)
    api_token = workdir / "api-token"
    api_token.write_text(API_TOKEN + "\n")
    env = {
        **os.environ,
        "PF_DATABASE_URL": database_url,
        "PF_BROKER_URL": broker_url,
        "PF_SECRETS_DIR": str(workdir / "secrets"),
        "PF_VAR_DIR": str(workdir / "var"),
        "PF_API_TOKEN_FILE": str(api_token),
        "PF_RESOURCE_REFRESH_SECONDS": "0",
        "PF_LOG_FORMAT": "json",
    }
    env.update(extra)
    return {name: value for name, value in env.items() if value}


@contextlib.contextmanager
def running_ingest(
    database_url: str,
    workdir: Path,
    broker_url: str,
    sources: Mapping[str, Mapping[str, Any]],
    workers: int = 2,
    **extra_env: str,
) -> Iterator[Ingest]:
    """Start `punchingfist ingest` on a free port; an empty value in extra_env unsets it."""
    put_sources(database_url, sources)
    port = free_port()
    log_path = workdir / "ingest.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "ingest",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
            ],
            env=ingest_env(database_url, workdir, broker_url, **extra_env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    ingest = Ingest(f"http://127.0.0.1:{port}", log_path, process)
    try:
        _wait_healthy(ingest)
        yield ingest
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
