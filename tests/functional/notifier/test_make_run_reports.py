"""``punchingfist run`` (what ``make run`` starts) on the embedded default: an alert
posted to ingest is investigated by the engine and its report appears on the
terminal, printed by the notifier's stdout Sink from ``examples/``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.workers import REPO

pytestmark = pytest.mark.timeout(120)


def _post(url: str, body: bytes) -> bool:
    request = urllib.request.Request(
        url,
        data=body,
        headers={
            "Authorization": "Bearer dev-token-change-me",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


# The report's first line, whatever the run's state: a failed run fails the test with
# its report rather than a timeout.
_FINISHED = re.compile(r"run \w+ ==\n")


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_an_alert_report_appears_on_the_terminal(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PF_")}
    env.update(
        {
            "PF_VAR_DIR": str(tmp_path / "var"),
            "PF_SECRETS_DIR": str(REPO / "examples" / "secrets"),
            "PF_ENGINE_CONCURRENCY": "1",
            "PF_NOTIFIER_CONCURRENCY": "1",
            "PF_INGEST_WORKERS": "1",
        }
    )
    out = tmp_path / "stdout"
    logs = tmp_path / "stderr"
    with out.open("wb") as stdout, logs.open("wb") as stderr:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "run",
                "--config-dir",
                "examples",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        body = (REPO / "tests/fixtures/alertmanager/01-firing-single.json").read_bytes()
        pod = json.loads(body)["alerts"][0]["labels"]["pod"]
        wait_for(
            lambda: _post(f"http://127.0.0.1:{port}/webhook/alertmanager", body) or time.sleep(0.5),
            60,
            "ingest to accept the alert",
        )
        try:
            report = wait_for(
                lambda: _FINISHED.search(text := out.read_text()) and text,
                60,
                "a report on stdout",
            )
        except AssertionError as timeout:
            # The components' logs say where the alert stopped (ingest, broker, engine, notifier).
            raise AssertionError(
                f"{timeout}\n--- stderr (last 80 lines) ---\n{_tail(logs, 80)}"
            ) from None
        assert "== Punching Fist: KubePodCrashLooping (critical): run Succeeded ==" in report
        assert f"pod={pod}" in report
        assert (
            "steps      record Succeeded, investigate Succeeded, is-critical Succeeded, "
            "escalate Succeeded"
        ) in report
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(30)
