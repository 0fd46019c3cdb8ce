"""``punchingfist`` deployables as child processes of a test, and what they start with.

Functional tests meet the workers (and the scheduler) the way a container runs them:
``python -m services.cli <command>`` in its own process group, with an environment
built from nothing but the test's settings, logging to a file the test can read when
it fails. The engine's and the notifier's tests share these; each suite only names
its command and its settings.

What this module must not do: hold fixtures (conftest files wrap these), or know any
deployable's settings beyond the ones every one of them reads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]


def process_env(
    database_url: str, broker_url: str, var_dir: Path, **settings: str
) -> dict[str, str]:
    """This process's environment for a deployable on ``database_url`` and ``broker_url``.

    The test runner's own ``PF_`` variables are left out, and so is
    ``CELERY_BROKER_URL``, which Celery would prefer to ``PF_BROKER_URL``: a child
    must see the test's settings only. ``settings`` are further ``PF_`` variables.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PF_") and key != "CELERY_BROKER_URL"
    }
    env.update(
        {
            "PF_DATABASE_URL": database_url,
            "PF_BROKER_URL": broker_url,
            "PF_VAR_DIR": str(var_dir),
            "PF_LOG_FORMAT": "json",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(settings)
    return env


@contextlib.contextmanager
def flushed_redis(url: str) -> Iterator[str]:
    """``url``'s Redis database, emptied before and after; skips (fails in CI) when down."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {url}")
        pytest.skip(f"Redis is not reachable at {url}")
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (from /proc; Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class PunchingFistProcess:
    """``punchingfist <argv>`` as a child process in its own process group.

    ``stop`` is SIGTERM (a worker's warm shutdown: it finishes what it runs) and, after
    ``stop_timeout`` seconds, SIGKILL; ``kill`` is SIGKILL at once, as when a node dies.
    """

    def __init__(
        self, argv: Sequence[str], env: dict[str, str], log_path: Path, *, stop_timeout: float = 10
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *self.argv],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the process, its pool processes and their commands at once.

        As when a container is killed: commands run in their own sessions, so they
        are found as descendants rather than through the process group.
        """
        assert self.process is not None
        doomed = descendants(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def healthcheck(worker: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``punchingfist healthcheck <worker> --timeout 2 [args]``, as the livenessProbe runs it."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "healthcheck", worker, "--timeout", "2", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def failed_with(result: subprocess.CompletedProcess[str], reason: str) -> None:
    """The check failed as a probe expects: exit 1 and one stderr line that gives ``reason``."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("punchingfist healthcheck: "), lines
    assert reason in lines[0], lines
