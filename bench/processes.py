"""The benchmarks' child processes: a free loopback port, a server started in its own
process group and stopped with it, and polling until something holds.

Every benchmark starts real processes (gunicorn, workers, a redis-server) and must
leave none behind, even when it fails half way; that is why a child gets its own
process group and ``stop`` signals the whole group. Nothing here is timed: what a
benchmark measures, and how often it polls while it measures, stays in the benchmark
(``wait_until`` takes the interval from the caller for that reason).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    An OSError means "not yet" (a server still binding its port). Raises TimeoutError
    naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def answers(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bool:
    """Whether ``url`` answers 2xx: a GET, or a POST of ``body``. Raises OSError when
    nothing answers or the answer is 4xx/5xx; ``wait_until`` reads that as "not yet"."""
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="GET" if body is None else "POST"
    )
    with urllib.request.urlopen(request, timeout=2) as response:
        return bool(200 <= response.status < 300)


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``argv`` in the repository, in a process group of its own, its output to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this script started, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start(
    argv: list[str], env: dict[str, str], log: Path, ready: Callable[[], object], what: str
) -> subprocess.Popen[bytes]:
    """``spawn``, then wait up to a minute until ``ready()``; a server that never gets
    ready is stopped before the TimeoutError leaves."""
    process = spawn(argv, env, log)
    try:
        wait_until(ready, 60, f"{what} (log: {log})")
    except BaseException:
        stop(process)
        raise
    return process


def start_ingest(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``punchingfist ingest`` on a free loopback port, once its /readyz answers (the
    Sources are read: the first webhook finds its Source); the process and the port."""
    port = free_port()
    argv = [sys.executable, "-m", "services.cli", "ingest", "--bind", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}/readyz"
    return start(argv, env, log, lambda: answers(url), "ingest /readyz"), port


def service_env(**settings: str) -> dict[str, str]:
    """This environment for a ``punchingfist`` process, with only the benchmark's
    ``PF_`` settings: the caller's own (a developer's PF_DATABASE_URL) must not reach
    what is measured. Logs at WARNING unless ``settings`` say otherwise."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PF_")}
    env.update(PF_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    env.update(settings)
    return env


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A redis-server of our own: nothing else's queues share it, nothing is persisted."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --redis-url")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(workdir)]
    process = spawn(argv, dict(os.environ), workdir / "redis.log")
    try:
        import redis

        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), 20, "redis-server")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
