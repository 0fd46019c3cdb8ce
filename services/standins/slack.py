"""A local stand-in for the Slack Web API, for compose, the tests and the benchmark.

It speaks the part of the Web API the notifier uses, as Slack does: methods under
``/api/<method>``, JSON or form bodies (or query strings for GET), the bot token in
``Authorization: Bearer``, HTTP 200 with ``{"ok": false, "error": ...}`` for API
errors, and the fields a real answer has (``chat.postMessage`` answers ``ok``,
``channel``, ``ts`` and ``message``; an answer of just ``{"ok": true}`` would leave
slack-sdk's ``resp["ts"]`` silently None).

Methods: ``chat.postMessage``, ``chat.update``, ``conversations.history`` (top-level
messages, newest first, ``oldest``/``latest``/``inclusive``/``limit``/``cursor``,
metadata only with ``include_all_metadata``), ``conversations.replies``,
``conversations.list``, ``auth.test``.

Interactions: ``click(ts, action_id, request_url=..., signing_secret=...)`` presses a
button of a posted message as a person would; the stand-in posts the signed
``block_actions`` payload (``user``, ``container``, ``message``, ``actions`` with the
button's ``value``) to the app's Request URL, as Slack does. A button that the
message no longer shows (edited away by ``chat.update``) cannot be pressed.

Faults, for the tests: ``fail_next(method, status=429, retry_after=1)`` answers the
next calls with an HTTP error, ``fail_next(method, error="channel_not_found")`` with
``ok: false``, ``fail_next(method, answer={"ok": True})`` with any answer, and
``delay_next(method, seconds)`` stores the message and then waits before answering,
which is the window in which a test kills the sender: Slack has posted the message,
the sender has not recorded it.

In-process: ``with SlackAPI(token="xoxb-test") as slack: slack.url`` (ends in /api/).
As a process (compose, by hand): ``python -m services.standins.slack --bind
127.0.0.1:9091`` (the bot token it accepts is ``--token``, default ``xoxb-test-token``);
then ``GET /_test/messages`` lists what was posted, ``POST /_test/reset`` clears it,
and ``POST /_test/click`` (JSON ``ts``, ``action_id``, ``request_url``,
``signing_secret``) presses a button. A click's ``response_url`` points back at the
stand-in (``/_test/response/<ts>``), which records what is posted there.
Point a Sink's ``apiUrl`` at ``http://HOST:PORT/api/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The bot token the stand-in accepts by default: a development value, not a secret.
TOKEN = "xoxb-test-token"  # noqa: S105
DEFAULT_CHANNELS = {"incidents": "C0INCIDENTS", "ops": "C0000000OPS"}


@dataclasses.dataclass
class Fault:
    method: str
    count: int
    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    # A whole answer to give instead (e.g. {"ok": true} without channel and ts).
    answer: dict[str, Any] | None = None


@dataclasses.dataclass
class Call:
    method: str
    authorization: str | None
    content_type: str | None
    body: dict[str, Any]


class SlackAPI:
    """The stand-in server; thread-safe; start with ``start()`` or as a context manager."""

    def __init__(
        self,
        token: str = TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        channels: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.channels = dict(channels or DEFAULT_CHANNELS)
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self._ts = itertools.count(1)
        self._epoch = int(time.time())
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/"

    def start(self) -> SlackAPI:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SlackAPI:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what tests look at ----------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._messages]

    def parents(self) -> list[dict[str, Any]]:
        return [m for m in self.messages() if not m.get("thread_ts")]

    def replies(self, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m.get("thread_ts") == thread_ts]

    def click(
        self,
        ts: str,
        action_id: str,
        *,
        request_url: str,
        signing_secret: str,
        user: tuple[str, str] = ("U0ALICE", "alice"),
    ) -> tuple[int, Any]:
        """Press a button of a posted message, as a person in Slack does: Slack then
        posts a signed ``block_actions`` interaction to the app's Request URL.

        Returns the app's (status, JSON answer). Raises LookupError when the message
        shows no such button (an edited message whose buttons were removed).
        """
        with self._lock:
            message = next((dict(m) for m in self._messages if m["ts"] == ts), None)
        if message is None:
            raise LookupError(f"no message {ts}")
        button, block_id = None, None
        for block in message.get("blocks") or []:
            for element in block.get("elements") or [] if block.get("type") == "actions" else []:
                if element.get("type") == "button" and element.get("action_id") == action_id:
                    button, block_id = element, block.get("block_id")
        if button is None:
            raise LookupError(f"message {ts} shows no {action_id} button")
        payload = {
            "type": "block_actions",
            "user": {"id": user[0], "username": user[1], "team_id": "T0TEST"},
            "team": {"id": "T0TEST", "domain": "standin"},
            "api_app_id": "A0STANDIN",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": message["channel"],
                "is_ephemeral": False,
            },
            "channel": {"id": message["channel"]},
            "message": _public(message),
            "trigger_id": f"{self._next_ts()}.standin",
            "response_url": f"{self.url.removesuffix('/api/')}/_test/response/{ts}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": button.get("value"),
                    "text": button.get("text"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        timestamp = str(int(time.time()))
        digest = hmac.new(
            signing_secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256
        ).hexdigest()
        request = urllib.request.Request(  # noqa: S310  the test's own ingest URL
            request_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": f"v0={digest}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def respond(self, ts: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        """A POST to a click's ``response_url``: recorded as method ``response_url``;
        ``replace_original`` edits the clicked message, as in Slack."""
        with self._lock:
            self._calls.append(Call("response_url", None, "application/json", dict(body)))
            for message in self._messages:
                if message["ts"] == ts and _true(body.get("replace_original")):
                    message["blocks"] = body.get("blocks") or []
                    message["text"] = body.get("text", message["text"])
                    message["edited"] = {"user": "U0BOT", "ts": self._next_ts()}
        return 200, {}, {"ok": True}

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        answer: dict[str, Any] | None = None,
        count: int = 1,
    ) -> None:
        with self._lock:
            self._faults.append(Fault(method, count, status, error, retry_after, answer=answer))

    def delay_next(self, method: str, seconds: float, count: int = 1) -> None:
        with self._lock:
            self._faults.append(Fault(method, count, delay=seconds))

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._calls.clear()
            self._faults.clear()

    # -- the API ---------------------------------------------------------------

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _next_ts(self) -> str:
        return f"{self._epoch}.{next(self._ts):06d}"

    def _channel_id(self, channel: Any) -> str | None:
        name = str(channel or "").lstrip("#")
        if name in self.channels:
            return self.channels[name]
        return name if name in self.channels.values() else None

    def handle(
        self, method: str, authorization: str | None, content_type: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self._calls.append(Call(method, authorization, content_type, body))
        fault = self._take_fault(method)
        if fault is not None and fault.answer is not None:
            return fault.status, {}, fault.answer
        if fault is not None and fault.delay == 0.0:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(int(fault.retry_after))
            error = fault.error or ("ratelimited" if fault.status == 429 else "internal_error")
            return fault.status, headers, {"ok": False, "error": error}
        if authorization != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        answer: dict[str, Any] = handler(body)
        if fault is not None:
            time.sleep(fault.delay)  # the message exists; the answer is late
        return 200, {}, answer

    def _auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user_id": "U0BOT", "team_id": "T0TEST", "bot_id": "B0BOT"}

    def _chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        channel = self._channel_id(body.get("channel"))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        metadata = body.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        with self._lock:
            thread_ts = body.get("thread_ts")
            if thread_ts and not any(
                m["ts"] == thread_ts and m["channel"] == channel for m in self._messages
            ):
                return {"ok": False, "error": "thread_not_found"}
            message = {
                "type": "message",
                "user": "U0BOT",
                "bot_id": "B0BOT",
                "channel": channel,
                "ts": self._next_ts(),
                "text": body.get("text", ""),
                "blocks": blocks or [],
                "thread_ts": thread_ts,
                "metadata": metadata,
                # When the stand-in stored it (wall clock), for the benchmark's latency.
                "received_at": time.time(),
            }
            self._messages.append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": _public(message)}

    def _chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(body.get("channel"))
        with self._lock:
            for message in self._messages:
                if message["channel"] == channel and message["ts"] == body.get("ts"):
                    if "text" in body:
                        message["text"] = body["text"]
                    if "blocks" in body:
                        blocks = body["blocks"]
                        message["blocks"] = (
                            json.loads(blocks) if isinstance(blocks, str) else blocks
                        )
                    message["edited"] = {"user": "U0BOT", "ts": self._next_ts()}
                    return {
                        "ok": True,
                        "channel": channel,
                        "ts": message["ts"],
                        "text": message["text"],
                        "message": _public(message),
                    }
        return {"ok": False, "error": "message_not_found"}

    def _page(
        self, found: list[dict[str, Any]], body: dict[str, Any], metadata: bool
    ) -> dict[str, Any]:
        limit = int(body.get("limit") or 100)
        start = int(body.get("cursor") or 0)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": [_public(m, metadata=metadata) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(body.get("channel"))
        if channel is None or channel != str(body.get("channel")):
            # Like Slack: history takes an id, not a name.
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(body.get("oldest") or 0)
        latest = float(body.get("latest") or 1e12)
        inclusive = _true(body.get("inclusive"))
        with self._lock:
            found = [
                m
                for m in self._messages
                if m["channel"] == channel
                and not m.get("thread_ts")
                and (
                    oldest <= float(m["ts"]) <= latest
                    if inclusive
                    else oldest < float(m["ts"]) < latest
                )
            ]
        found.sort(key=lambda m: float(m["ts"]), reverse=True)
        return self._page(found, body, _true(body.get("include_all_metadata")))

    def _conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(body.get("channel"))
        ts = body.get("ts")
        with self._lock:
            found = [
                m
                for m in self._messages
                if m["channel"] == channel and (m["ts"] == ts or m.get("thread_ts") == ts)
            ]
        if not found:
            return {"ok": False, "error": "thread_not_found"}
        found.sort(key=lambda m: float(m["ts"]))
        return self._page(found, body, _true(body.get("include_all_metadata")))

    def _conversations_list(self, body: dict[str, Any]) -> dict[str, Any]:
        channels = [{"id": cid, "name": name} for name, cid in sorted(self.channels.items())]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}


def _true(value: Any) -> bool:
    return str(value).lower() in {"1", "true"}


def _public(message: dict[str, Any], metadata: bool = True) -> dict[str, Any]:
    hidden = {"channel", "received_at"}
    shown = {k: v for k, v in message.items() if k not in hidden and v is not None}
    if not metadata:
        shown.pop("metadata", None)
    return shown


def _handler_for(api: SlackAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read calls() instead

        def _body(self) -> dict[str, Any]:
            url = urllib.parse.urlsplit(self.path)
            values: dict[str, Any] = dict(urllib.parse.parse_qsl(url.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if raw and kind == "application/json":
                values.update(json.loads(raw))
            elif raw:
                values.update(urllib.parse.parse_qsl(raw.decode()))
            return values

        def _answer(self, status: int, headers: dict[str, str], document: Any) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            body = self._body()
            if path == "/_test/messages":
                self._answer(200, {}, api.messages())
            elif path == "/_test/reset":
                api.reset()
                self._answer(200, {}, {"ok": True})
            elif path == "/_test/click":
                # By hand (compose): press a button; the body names it and the app.
                try:
                    status, answer = api.click(
                        str(body["ts"]),
                        str(body["action_id"]),
                        request_url=str(body["request_url"]),
                        signing_secret=str(body["signing_secret"]),
                    )
                except (KeyError, LookupError) as exc:
                    self._answer(400, {}, {"ok": False, "error": str(exc)})
                else:
                    self._answer(200, {}, {"status": status, "answer": answer})
            elif path.startswith("/_test/response/"):
                # A click's response_url: the app's answer is recorded, as Slack would
                # show it (replace_original edits the message that was clicked).
                status, headers, document = api.respond(path.removeprefix("/_test/response/"), body)
                self._answer(status, headers, document)
            elif path.startswith("/api/"):
                status, headers, document = api.handle(
                    path.removeprefix("/api/"),
                    self.headers.get("Authorization"),
                    self.headers.get("Content-Type"),
                    body,
                )
                self._answer(status, headers, document)
            else:
                self._answer(404, {}, {"ok": False, "error": "not_found"})

        do_GET = _dispatch
        do_POST = _dispatch

    return Handler


def iter_threads(api: SlackAPI) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(parent, replies) for every thread, oldest first."""
    for parent in api.parents():
        yield parent, api.replies(parent["ts"])


def main() -> None:
    parser = argparse.ArgumentParser(description="a local Slack Web API stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9091)
    parser.add_argument("--bind", metavar="HOST:PORT", help="instead of --host and --port")
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args()
    if args.bind:
        args.host, _, port = args.bind.rpartition(":")
        args.port = int(port)
    api = SlackAPI(token=args.token, host=args.host, port=args.port)
    print(f"Slack Web API stand-in on {api.url} (token {args.token})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        api._server.serve_forever()


if __name__ == "__main__":
    main()
