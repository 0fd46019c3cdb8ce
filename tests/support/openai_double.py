"""A scripted OpenAI-compatible chat server: the model, played by the test.

Only ``POST /v1/chat/completions`` exists, answering like OpenAI's API: an assistant
message whose ``tool_calls[].function.arguments`` is a JSON *string*. Each request
is handed to the next step of the script, a function of the request body (so a
scripted model can read the tool results it was sent) returning one of:

* ``call(name, **arguments)`` / ``calls(...)`` — tool calls;
* ``text("...")`` — a plain assistant message;
* ``raw_arguments(name, "not json")`` — a tool call with unparseable arguments;
* ``status(503)`` — an HTTP error.

When the script runs out, every further request gets 500 (a test that expected
fewer turns fails loudly). ``requests`` keeps every body received.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Body = dict[str, Any]
Step = Callable[[Body], Any]
_ids = itertools.count(1)


def call(tool: str, /, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [(tool, json.dumps(arguments))]}


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [(name, json.dumps(arguments)) for name, arguments in pairs]}


def raw_arguments(name: str, arguments: str) -> dict[str, Any]:
    return {"tool_calls": [(name, arguments)]}


def text(content: str) -> dict[str, Any]:
    return {"content": content}


def status(code: int, delay: float = 0.0) -> dict[str, Any]:
    return {"status": code, "delay": delay}


def tool_results(body: Body) -> list[str]:
    """The contents of the tool messages in the request, oldest first."""
    return [str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "tool"]


class ScriptedModel:
    def __init__(self, script: Sequence[Step | dict[str, Any]]) -> None:
        self.script = list(script)
        self.requests: list[Body] = []
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _next(self, body: Body) -> dict[str, Any]:
        with self.lock:
            self.requests.append(body)
            if not self.script:
                return status(500)
            step = self.script.pop(0)
        return step(body) if callable(step) else step

    @staticmethod
    def completion(body: Body, reply: dict[str, Any]) -> Body:
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if reply.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": f"call_{next(_ids)}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for name, arguments in reply["tool_calls"]
            ]
        return {
            "id": f"chatcmpl-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.get("tool_calls") else "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def __enter__(self) -> ScriptedModel:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle and
            # delayed ACKs add 40 ms to every request.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                reply = model._next(body)
                if "status" in reply:
                    time.sleep(reply.get("delay", 0))
                    self._send(
                        reply["status"],
                        {"error": {"message": "scripted failure", "type": "server_error"}},
                    )
                    return
                self._send(200, model.completion(body, reply))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
