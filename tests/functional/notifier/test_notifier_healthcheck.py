"""``punchingfist healthcheck notifier``, the notifier's livenessProbe, against a real worker.

Exit 0 while this host's ``notifier@<hostname>`` runs, exit 1 with one line once it
has stopped. The frozen worker and the unreachable broker do not depend on the queue
and are covered once, by the engine's test (tests/functional/engine/
test_worker_healthcheck.py).
"""

from __future__ import annotations

import socket

import pytest
from notifierkit import NotifierProcess

from tests.support import workers
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_running_notifier_answers_and_a_stopped_one_does_not(
    worker_env: dict[str, str], notifier_process: NotifierProcess
) -> None:
    host = socket.gethostname()
    notifier_process.start()
    wait_for(
        lambda: workers.healthcheck("notifier", worker_env).returncode == 0,
        60,
        "the running notifier to answer",
    )
    # The engine's check names engine@<host>, which this worker is not.
    workers.failed_with(workers.healthcheck("engine", worker_env), f"engine@{host}")

    notifier_process.stop()
    workers.failed_with(
        workers.healthcheck("notifier", worker_env), f"worker notifier@{host} did not answer"
    )
