"""``punchingfist healthcheck engine``, the workers' livenessProbe, against a real worker.

The check pings this host's worker node (``engine@<hostname>``) over the broker and
the worker's consumer loop answers: exit 0 while the worker runs, exit 1 with one
line saying why when it is not there, frozen (SIGSTOP, as a worker stuck in its loop)
or stopped, or when the broker cannot be reached.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
from enginekit import WorkerProcess

from tests.support import workers
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def healthcheck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return workers.healthcheck("engine", env, *args)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_alive_frozen_and_stopped_workers(
    worker_env: dict[str, str], worker_process: WorkerProcess
) -> None:
    node = f"engine@{socket.gethostname()}"
    workers.failed_with(healthcheck(worker_env), f"worker {node} did not answer a ping within 2s")

    worker_process.start()
    wait_for(lambda: healthcheck(worker_env).returncode == 0, 60, "the live worker did not answer")
    # Another node's name gets no answer from this worker.
    workers.failed_with(healthcheck(worker_env, "--node", "engine@elsewhere"), "engine@elsewhere")

    assert worker_process.process is not None
    pid = worker_process.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        workers.failed_with(healthcheck(worker_env), f"worker {node} did not answer")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(
        lambda: healthcheck(worker_env).returncode == 0, 30, "the thawed worker did not answer"
    )

    worker_process.stop()
    workers.failed_with(healthcheck(worker_env), f"worker {node} did not answer")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unreachable_broker_is_one_line(worker_env: dict[str, str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**worker_env, "PF_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    workers.failed_with(healthcheck(env), "broker unreachable")
