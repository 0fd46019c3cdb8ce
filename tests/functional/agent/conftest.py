"""Agent tests: recorded scenarios served by the Kubernetes API double, scripted models."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.waiting import wait_for

REPO = Path(__file__).parents[3]

# The eval harness (scenarios and how they are served) is shared with these tests.
sys.path.insert(0, str(Path(__file__).parents[2] / "evals"))


@pytest.fixture
def standin() -> Iterator[str]:
    """``python -m services.standins.llm`` on a free port; its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.standins.llm", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(up, 20, "the stand-in model to listen")
        yield url
    finally:
        process.terminate()
        process.wait(10)
