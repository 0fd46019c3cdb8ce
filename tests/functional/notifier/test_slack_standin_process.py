"""The Slack stand-in as compose runs it: ``python -m services.standins.slack --bind``,
spoken to by slack-sdk as the notifier speaks to Slack."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from notifierkit import REPO, free_port, wait_for
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from services.standins.slack import TOKEN


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
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert f"Slack Web API stand-in on http://127.0.0.1:{port}/api/" in out.decode()


def _answers(url: str) -> bool:
    try:
        _get(url)
    except OSError:
        return False
    return True
