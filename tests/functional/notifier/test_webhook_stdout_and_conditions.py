"""The webhook and stdout Sinks, Sink conditions, and the circuit breaker shared
through Redis, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from notifierkit import Harness

from services.notifier import tasks
from services.notifier.app import Runtime, create_app, runtime_for
from shared.settings import Settings


class Receiver:
    """A webhook receiver that records requests and answers with ``statuses`` in turn."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.statuses: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), json.loads(body)))
                status, headers = receiver.statuses.pop(0) if receiver.statuses else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def webhook(url: str, **spec: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "config": {
            "url": url,
            "headers": {"X-Team": "sre"},
            "secretRef": {"name": "hook", "key": "token"},
        },
        **spec,
    }


def test_webhook_posts_the_result_with_headers_token_and_idempotency_key(
    harness: Harness, runtime: Runtime, receiver: Receiver
) -> None:
    harness.put_secret("hook", "token", "hook-secret")
    harness.put_sink("hook", webhook(receiver.url))
    alert_id = harness.add_alert()
    run_id, ids = harness.add_finished_run(["hook"], alert_id)
    assert tasks.deliver_once(runtime, str(ids["hook"])).retry_in is None
    [(headers, body)] = receiver.requests
    assert headers["Authorization"] == "Bearer hook-secret"
    assert headers["X-Team"] == "sre"
    assert headers["Idempotency-Key"] == str(ids["hook"])
    assert body["run"]["id"] == str(run_id)
    assert body["run"]["phase"] == "Succeeded"
    assert body["outputs"]["rootCause"] == "memory limit 128Mi is too low"
    assert body["alert"]["labels"]["pod"] == "web-1"
    assert body["steps"]["look"]["output"]["stdout"] == "restarts: 7"
    assert body["delivery"] == {"id": str(ids["hook"]), "sink": "hook"}
    delivery = harness.delivery(ids["hook"])
    assert (delivery.phase, delivery.response) == ("Delivered", {"status": 200})
    assert harness.alert(alert_id).status == "escalated"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (400, "Failed"),
        (401, "Failed"),
        (404, "Failed"),
        (408, "Pending"),
        (429, "Pending"),
        (500, "Pending"),
        (503, "Pending"),
        (301, "Failed"),
    ],
)
def test_webhook_status_classes(
    harness: Harness, runtime: Runtime, receiver: Receiver, status: int, phase: str
) -> None:
    harness.put_secret("hook", "token", "t")
    harness.put_sink("hook", webhook(receiver.url))
    _, ids = harness.add_finished_run(["hook"], harness.add_alert())
    receiver.statuses.append((status, {"Location": "http://elsewhere/"} if status == 301 else {}))
    tasks.deliver_once(runtime, str(ids["hook"]))
    delivery = harness.delivery(ids["hook"])
    assert (delivery.phase, delivery.attempts) == (phase, 1)
    assert str(status) in delivery.error


def test_webhook_retry_after_sets_the_wait(
    harness: Harness, runtime: Runtime, receiver: Receiver
) -> None:
    harness.put_secret("hook", "token", "t")
    harness.put_sink("hook", webhook(receiver.url))
    _, ids = harness.add_finished_run(["hook"], harness.add_alert())
    receiver.statuses.append((429, {"Retry-After": "42"}))
    step = tasks.deliver_once(runtime, str(ids["hook"]))
    assert step.retry_in == 42


def test_stdout_text_report(
    harness: Harness, runtime: Runtime, capfd: pytest.CaptureFixture[str]
) -> None:
    harness.put_sink("console", {"type": "stdout"})
    alert_id = harness.add_alert(labels={"alertname": "Disk\x1b[31mFull", "severity": "warning"})
    _, ids = harness.add_finished_run(["console"], alert_id)
    tasks.deliver_once(runtime, str(ids["console"]))
    out = capfd.readouterr().out
    assert "== Punching Fist: Disk\\x1b[31mFull (warning): run Succeeded ==" in out
    assert "\x1b" not in out  # no terminal escape from an alert label
    assert "root cause" in out
    assert "memory limit 128Mi is too low" in out
    assert "http://pf.example:8080/api/v1/runs/" in out
    assert harness.delivery(ids["console"]).phase == "Delivered"
    # stdout tells nobody in particular: the alert is not escalated by it.
    assert harness.alert(alert_id).status == "triaging"


def test_stdout_json_is_one_line(
    harness: Harness, runtime: Runtime, capfd: pytest.CaptureFixture[str]
) -> None:
    harness.put_sink("console", {"type": "stdout", "config": {"format": "json"}})
    run_id, ids = harness.add_finished_run(["console"], harness.add_alert())
    tasks.deliver_once(runtime, str(ids["console"]))
    [line] = capfd.readouterr().out.splitlines()
    document = json.loads(line)
    assert document["run"]["id"] == str(run_id)
    assert document["steps"] == {"look": "Succeeded"}
    assert document["sink"] == "console"


def test_a_false_condition_skips_with_the_reason(
    harness: Harness, runtime: Runtime, capfd: pytest.CaptureFixture[str]
) -> None:
    harness.put_sink("console", {"type": "stdout", "condition": 'run.phase == "Failed"'})
    _, ids = harness.add_finished_run(["console"], harness.add_alert())
    tasks.deliver_once(runtime, str(ids["console"]))
    delivery = harness.delivery(ids["console"])
    assert delivery.phase == "Skipped"
    assert delivery.error == "condition 'run.phase == \"Failed\"' is false"
    assert delivery.sent_at is None
    assert capfd.readouterr().out == ""


def test_a_condition_over_steps_outputs_and_alert(
    harness: Harness, runtime: Runtime, capfd: pytest.CaptureFixture[str]
) -> None:
    harness.put_sink(
        "console",
        {
            "type": "stdout",
            "condition": "'restarts' in steps.look.output.stdout"
            " and outputs.confidence | float > 0.5 and alert.labels.severity == 'critical'",
        },
    )
    _, ids = harness.add_finished_run(["console"], harness.add_alert())
    tasks.deliver_once(runtime, str(ids["console"]))
    assert harness.delivery(ids["console"]).phase == "Delivered"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("outputs.missing == 'x'", "missing"),
        ("run.phase ==", "condition"),
        ("alert.__class__", "condition"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_fails_the_delivery(
    harness: Harness, runtime: Runtime, condition: str, expected: str
) -> None:
    harness.put_sink("console", {"type": "stdout", "condition": condition})
    _, ids = harness.add_finished_run(["console"], harness.add_alert())
    assert tasks.deliver_once(runtime, str(ids["console"])).retry_in is None
    delivery = harness.delivery(ids["console"])
    assert delivery.phase == "Failed"
    assert expected in delivery.error
    assert "Sink default/console condition" in delivery.error


def test_an_approval_request_reaches_the_sinks_that_admit_it(
    harness: Harness, runtime: Runtime, receiver: Receiver
) -> None:
    harness.put_secret("hook", "token", "t")
    harness.put_sink("hook", webhook(receiver.url))
    harness.put_sink("results", {"type": "stdout", "condition": 'event == "run_finished"'})
    harness.put_sink(
        "am",
        {"type": "alertmanager", "config": {"url": "http://127.0.0.1:9/", "actions": ["annotate"]}},
    )
    run_id, _ = harness.add_finished_run([], harness.add_alert(), phase="WaitingApproval")
    approval_id = harness.add_approval(run_id)
    ids = {
        name: harness.add_delivery(run_id, name, "approval_requested", str(approval_id))
        for name in ("hook", "results", "am")
    }
    for delivery_id in ids.values():
        tasks.deliver_once(runtime, str(delivery_id))
    skipped = harness.delivery(ids["results"])
    assert (skipped.phase, skipped.error) == (
        "Skipped",
        "condition 'event == \"run_finished\"' is false",
    )
    am = harness.delivery(ids["am"])
    assert (am.phase, am.error) == (
        "Skipped",
        "alertmanager Sinks act on approval_requested events only to silence",
    )
    assert harness.delivery(ids["hook"]).phase == "Delivered"
    [(_, body)] = receiver.requests
    assert body["event"] == "approval_requested"
    assert body["approval"]["id"] == str(approval_id)
    assert (body["approval"]["status"], body["approval"]["what"]) == (
        "pending",
        "delete-pod pod prod/web-1",
    )
    assert body["approval"]["rationale"] == "it is stuck"


def test_a_missing_sink_fails_the_delivery(harness: Harness, runtime: Runtime) -> None:
    _, ids = harness.add_finished_run(["nowhere"], harness.add_alert())
    tasks.deliver_once(runtime, str(ids["nowhere"]))
    delivery = harness.delivery(ids["nowhere"])
    assert (delivery.phase, delivery.error) == ("Failed", "no Sink default/nowhere")


def test_a_run_without_an_alert_is_reported(
    harness: Harness, runtime: Runtime, capfd: pytest.CaptureFixture[str]
) -> None:
    harness.put_sink("console", {"type": "stdout"})
    _, ids = harness.add_finished_run(["console"], None)
    tasks.deliver_once(runtime, str(ids["console"]))
    assert harness.delivery(ids["console"]).phase == "Delivered"
    assert "Punching Fist: triage: run Succeeded" in capfd.readouterr().out


@pytest.mark.redis
def test_the_circuit_breaker_is_shared_and_lets_deliveries_wait(
    harness: Harness,
    notifier_settings: Callable[..., Settings],
    redis_url: str,
    receiver: Receiver,
) -> None:
    settings = notifier_settings(
        PF_NOTIFIER_BREAKER_REDIS_URL=redis_url,
        PF_NOTIFIER_BREAKER_FAIL_MAX="2",
        PF_NOTIFIER_BREAKER_RESET_SECONDS="30",
    )
    # Two runtimes with their own breaker objects: two worker processes.
    first, second = (runtime_for(create_app(settings)) for _ in range(2))
    try:
        harness.put_secret("hook", "token", "t")
        harness.put_sink("hook", webhook(receiver.url))
        receiver.statuses.extend([(503, {}), (503, {})])
        ids = [harness.add_finished_run(["hook"], harness.add_alert())[1]["hook"] for _ in range(3)]
        tasks.deliver_once(first, str(ids[0]))
        tasks.deliver_once(first, str(ids[1]))
        assert len(receiver.requests) == 2

        # The other process sees the open breaker: no call, no attempt used.
        step = tasks.deliver_once(second, str(ids[2]))
        assert len(receiver.requests) == 2
        assert step.retry_in is not None
        assert 20 < step.retry_in <= 30
        waiting = harness.delivery(ids[2])
        assert (waiting.phase, waiting.attempts) == ("Pending", 0)
        assert "circuit breaker open for Sink default/hook" in waiting.error
    finally:
        first.close()
        second.close()
