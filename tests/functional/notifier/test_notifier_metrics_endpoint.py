"""A real ``punchingfist notifier`` worker (prefork, Redis) serves what it did on /metrics.

Four deliveries with four different ends: a Slack message that fails once (500) and
is delivered on the retry, a stdout Sink whose condition is false, and a webhook
that answers 404 (failed for good). The scrape must count each attempt under its
Sink type and outcome, and each task run under ``notifier.deliver``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery import Celery
from notifierkit import Harness, NotifierProcess, slack_sink

from services.standins.slack import SlackAPI
from shared.queueing import DELIVER, NOTIFIER_QUEUE
from tests.support.ports import free_port
from tests.support.scrape import Samples, scrape
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def gone() -> Iterator[str]:
    """A webhook receiver that answers every POST with 404: a permanent failure."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_deliveries_by_sink_type_and_outcome(
    harness: Harness,
    slack: SlackAPI,
    sender: Celery,
    notifier_process: NotifierProcess,
    gone: str,
) -> None:
    port = free_port()
    notifier_process.env["PF_NOTIFIER_METRICS_BIND"] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}/metrics"
    harness.put_sink("slack", slack_sink(slack.url))
    harness.put_sink("console", {"type": "stdout", "condition": 'run.phase == "Failed"'})
    harness.put_secret("hook", "token", "t")
    harness.put_sink(
        "hook",
        {
            "type": "webhook",
            "config": {
                "url": gone,
                "secretRef": {"name": "hook", "key": "token"},
            },
        },
    )
    slack.fail_next("chat.postMessage", status=500)
    _, ids = harness.add_finished_run(["slack", "console", "hook"], harness.add_alert())
    notifier_process.start()
    wait_for(lambda: scrape(url), 30, "the metrics endpoint", ignoring=(OSError,))
    for delivery_id in ids.values():
        sender.send_task(DELIVER, args=[str(delivery_id)], queue=NOTIFIER_QUEUE)

    def finished(delivery_id: uuid.UUID) -> bool:
        return bool(harness.delivery(delivery_id).phase != "Pending")

    wait_for(lambda: all(finished(i) for i in ids.values()), 40, "every delivery to finish")
    phases = {name: harness.delivery(i).phase for name, i in ids.items()}
    assert phases == {"slack": "Delivered", "console": "Skipped", "hook": "Failed"}

    def settled() -> Samples | None:
        # The last task's postrun runs after the delivery is recorded: wait for it.
        samples = scrape(url)
        return samples if samples.total("punchingfist_tasks_total", task=DELIVER) == 4 else None

    samples = wait_for(settled, 30, "four notifier.deliver runs counted")

    def deliveries(sink_type: str, outcome: str) -> float:
        return samples.value("punchingfist_deliveries_total", sink_type=sink_type, outcome=outcome)

    assert deliveries("slack", "retrying") == 1
    assert deliveries("slack", "delivered") == 1
    assert deliveries("stdout", "skipped") == 1
    assert deliveries("webhook", "failed") == 1
    assert samples.total("punchingfist_deliveries_total") == 4
    assert samples.value("punchingfist_tasks_total", task=DELIVER, outcome="retried") == 1
    assert samples.value("punchingfist_tasks_total", task=DELIVER, outcome="succeeded") == 3
    assert samples.value("punchingfist_task_duration_seconds_count", task=DELIVER) == 4
    # Sent twice to Slack and once to the webhook; the skipped one sent nothing.
    assert (
        samples.value("punchingfist_delivery_send_duration_seconds_count", sink_type="slack") == 2
    )
    assert (
        samples.value("punchingfist_delivery_send_duration_seconds_count", sink_type="webhook") == 1
    )
    assert not samples.has("punchingfist_delivery_send_duration_seconds_count", sink_type="stdout")
    assert samples.value("punchingfist_queue_length", queue=NOTIFIER_QUEUE) == 0
    assert samples.value("punchingfist_broker_up") == 1
