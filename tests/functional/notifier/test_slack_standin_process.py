"""The Slack stand-in as compose runs it: ``python -m services.standins.slack --bind``,
spoken to by slack-sdk as the notifier speaks to Slack."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from services.standins.slack import TOKEN
from shared.domain import interactions
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.workers import REPO


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def test_the_stand_in_runs_as_a_process_and_speaks_the_web_api() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.standins.slack", "--bind", f"127.0.0.1:{port}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/_test/messages"), 20, "the stand-in did not start")
        client = WebClient(token=TOKEN, base_url=f"{base}/api/")
        posted = client.chat_postMessage(channel="#incidents", text="hello")
        assert (posted["channel"], posted["message"]["text"]) == ("C0INCIDENTS", "hello")
        reply = client.chat_postMessage(channel="C0INCIDENTS", text="more", thread_ts=posted["ts"])
        assert reply["ok"] is True
        [parent, child] = _get(f"{base}/_test/messages")
        assert (parent["ts"], child["thread_ts"]) == (posted["ts"], posted["ts"])
        with pytest.raises(SlackApiError, match="invalid_auth"):
            WebClient(token="xoxb-wrong", base_url=f"{base}/api/").auth_test()
        _a_button_is_pressed_as_slack_posts_it(client, base)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert f"Slack Web API stand-in on http://127.0.0.1:{port}/api/" in out.decode()


def _a_button_is_pressed_as_slack_posts_it(client: WebClient, base: str) -> None:
    """``POST /_test/click`` posts the signed block_actions payload to the app, whose
    ``response_url`` leads back to the stand-in."""
    received: list[tuple[dict[str, str], bytes]] = []

    class App(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

    app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        buttons = [interactions.buttons("0b6c1c4e-8f5e-4f55-9a39-3c1a4f9f2a10", "restart web")]
        asked = client.chat_postMessage(channel="C0INCIDENTS", text="approve?", blocks=buttons)
        click = {
            "ts": asked["ts"],
            "action_id": interactions.DENY_ACTION,
            "request_url": f"http://127.0.0.1:{app.server_address[1]}/slack/interactions",
            "signing_secret": "s3cret",
        }
        request = urllib.request.Request(
            f"{base}/_test/click", json.dumps(click).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response) == {"status": 200, "answer": {"ok": True}}
    finally:
        app.shutdown()
        app.server_close()
    [(headers, body)] = received
    assert SignatureVerifier("s3cret").is_valid_request(body, headers)
    [payload] = urllib.parse.parse_qs(body.decode())["payload"]
    [clicked] = interactions.parse(payload)
    assert (str(clicked.approval_id), clicked.decision) == (
        "0b6c1c4e-8f5e-4f55-9a39-3c1a4f9f2a10",
        "deny",
    )
    response_url = json.loads(payload)["response_url"]
    assert response_url.startswith(f"{base}/_test/response/")
    replace = json.dumps({"replace_original": True, "text": "denied", "blocks": []}).encode()
    urllib.request.urlopen(
        urllib.request.Request(response_url, replace, {"Content-Type": "application/json"}),
        timeout=5,
    ).close()
    edited = [m for m in _get(f"{base}/_test/messages") if m["ts"] == asked["ts"]]
    assert edited[0]["text"] == "denied"


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True
