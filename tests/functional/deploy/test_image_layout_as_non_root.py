"""Ingest starts as the image starts it: a non-root user in a folder it cannot write.

Issue 9 item 10: the image ran as uid 65534 in a root-owned /app and ingest died
creating ``var/metrics`` in the working directory. No Docker engine exists here, so
the image's layout is reproduced: the Dockerfile's own ENV (PF_VAR_DIR, HOME, ...;
their paths moved under a temporary folder), a root-owned working directory, and
``setpriv`` to drop to uid/gid 65534. Through the real gunicorn server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.unit.deploy.test_dockerfile import final_stage_env

NOBODY = 65534
SETPRIV = shutil.which("setpriv")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to become uid 65534"
)


@pytest.fixture
def layout() -> Iterator[dict[str, Path]]:
    """A root-owned working directory and a var directory owned by 65534, under /tmp.

    Not pytest's tmp_path: its parents are 0700, which 65534 cannot traverse.
    """
    base = Path(tempfile.mkdtemp(prefix="pf-image-"))
    base.chmod(0o755)
    workdir = base / "app"
    workdir.mkdir(mode=0o755)
    var = base / "var"
    var.mkdir(mode=0o750)
    os.chown(var, NOBODY, NOBODY)
    yield {"workdir": workdir, "var": var}
    shutil.rmtree(base, ignore_errors=True)


def _environment(var: Path, port: int, *, with_dockerfile_env: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PF_")}
    env.pop("HOME", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PF_INGEST_BIND"] = f"127.0.0.1:{port}"
    env["PF_LOG_FORMAT"] = "text"
    if with_dockerfile_env:
        image_env = final_stage_env()
        image_var = image_env["PF_VAR_DIR"]
        for key, value in image_env.items():
            if key == "PATH":
                continue
            env[key] = value.replace(image_var, str(var))
    return env


def _ingest(workdir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    assert SETPRIV is not None
    return subprocess.Popen(
        [
            SETPRIV,
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-m",
            "services.cli",
            "ingest",
            "--workers",
            "1",
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_ready(child: subprocess.Popen[str], url: str, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return None
        try:
            if _get(url) == 200:
                return 200
        except OSError:
            pass
        time.sleep(0.2)
    return 0


def _stop(child: subprocess.Popen[str]) -> str:
    """Stop ``child`` (SIGTERM, as Kubernetes does) and return everything it printed."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        output, _ = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        output, _ = child.communicate()
    return output


def test_without_a_var_dir_ingest_cannot_start_in_a_read_only_folder(
    layout: dict[str, Path],
) -> None:
    """The fault as it was: the relative default `var` lands in the working directory."""
    port = free_port()
    child = _ingest(layout["workdir"], _environment(layout["var"], port, with_dockerfile_env=False))
    try:
        output, _ = child.communicate(timeout=60)
    finally:
        _stop(child)
    assert child.returncode != 0
    assert "Permission denied" in output or "PermissionError" in output, output


def test_with_the_images_environment_ingest_serves_as_non_root(layout: dict[str, Path]) -> None:
    port = free_port()
    env = _environment(layout["var"], port, with_dockerfile_env=True)
    child = _ingest(layout["workdir"], env)
    try:
        ready = _wait_ready(child, f"http://127.0.0.1:{port}/readyz", seconds=60)
        assert ready == 200, _stop(child)
        assert _get(f"http://127.0.0.1:{port}/healthz") == 200
        assert list(layout["workdir"].iterdir()) == []  # nothing written where it may not
        written = {path.name for path in layout["var"].iterdir()}
        assert "metrics" in written  # the per-worker Prometheus files
        assert all(path.stat().st_uid == NOBODY for path in layout["var"].rglob("*"))
    finally:
        output = _stop(child)
    assert child.returncode == 0, output
