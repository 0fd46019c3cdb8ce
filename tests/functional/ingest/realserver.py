"""Start the real commands (``punchingfist ingest``, ``punchingfist run``) for a test.

The processes are the ones a user starts: gunicorn with the ingest workers, the
file-mode controller, on a SQLite file and the embedded broker in the test's folder.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.functional.ingest.conftest import FIXTURES

PUNCHINGFIST = [sys.executable, "-m", "services.cli"]
BODY = (FIXTURES / "01-firing-single.json").read_bytes()


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PF_DATABASE_URL": f"sqlite:///{tmp_path}/pf.db",
        "PF_VAR_DIR": str(tmp_path / "var"),
        "PF_LOG_FORMAT": "text",
        **extra,
    }


@contextlib.contextmanager
def serving(argv: list[str], env: Mapping[str, str], port: int, log: Path) -> Iterator[int]:
    """Run ``punchingfist ARGV`` until the block ends; stderr goes to ``log``."""
    with log.open("w") as sink:
        process = subprocess.Popen([*PUNCHINGFIST, *argv], env=dict(env), stderr=sink)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def post(
    port: int, path: str, authorization: str | None, body: bytes = BODY
) -> tuple[int, dict[str, object], float]:
    """POST a webhook; (status, JSON answer, seconds it took)."""
    import json

    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    took = time.monotonic() - started
    return status, (json.loads(raw) if raw else {}), took


def wait_status(port: int, path: str, authorization: str | None, status: int) -> None:
    deadline = time.monotonic() + 30
    while (seen := post(port, path, authorization)[0]) != status:
        assert time.monotonic() < deadline, f"{path} still answers {seen}, not {status}"
        time.sleep(0.2)
