"""A stand-in OpenAI-compatible model for compose.yaml: ``python -m services.standins.llm``.

So that ``docker compose up`` can run a Workflow with ``runtime.llmConfig`` (provider
``local``, endpoint ``http://llm:8091``) without a model: it speaks the part of the
OpenAI chat API that the agent's loop uses (``POST /v1/chat/completions`` with tools,
``tool_calls[].function.arguments`` as a JSON string) and plays a deterministic
investigator: first it lists the pods of the alert's namespace with ``kubectl`` (when
offered), then it submits a result that echoes what the tools said, with category
``unknown``, confidence 0 and ``escalate: true``, saying that it is a stand-in. It
never asks for a change.

The wire format (:func:`completion`) is shared with the scripted model of the test
suite (``tests/support/openai_double.py``), so both answer as the same API does.
What this must not do: reason, or listen anywhere but where it is told.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)
Body = dict[str, Any]
_ids = itertools.count(1)
SUBMIT = "submit_result"


def completion(body: Body, reply: Body) -> Body:
    """A ``chat.completion`` answering ``body`` with ``reply``.

    ``reply``: ``{"content": str}`` and/or ``{"tool_calls": [(name, arguments_json)]}``,
    and ``{"usage": {"prompt_tokens": n, "completion_tokens": m}}`` to report token
    counts (a real server's; the stand-in counts none itself).
    """
    message: Body = {"role": "assistant", "content": reply.get("content")}
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
        "model": body.get("model", "stand-in"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.get("tool_calls") else "stop",
            }
        ],
        "usage": _usage(reply.get("usage") or {}),
    }


def _usage(given: Body) -> Body:
    prompt, completion_ = int(given.get("prompt_tokens", 0)), int(given.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_,
        "total_tokens": prompt + completion_,
    }


def _alert_labels(messages: Sequence[Body]) -> dict[str, Any]:
    for message in messages:
        content = str(message.get("content") or "")
        if message.get("role") == "user" and "<alert-data>" in content:
            raw = content.split("<alert-data>", 1)[1].split("</alert-data>", 1)[0]
            try:
                labels = json.loads(raw).get("alert", {}).get("labels") or {}
            except ValueError:
                return {}
            return dict(labels) if isinstance(labels, dict) else {}
    return {}


def answer(body: Body) -> Body:
    """The stand-in's next turn for a request."""
    messages = list(body.get("messages") or [])
    offered = {str((tool.get("function") or {}).get("name")) for tool in body.get("tools") or []}
    results = [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]
    labels = _alert_labels(messages)
    if not results and "kubectl" in offered and labels.get("namespace"):
        arguments = {"verb": "get", "kind": "pod", "namespace": str(labels["namespace"])}
        return {"tool_calls": [("kubectl", json.dumps(arguments))]}
    if SUBMIT not in offered:
        return {"content": "stand-in model: nothing to say"}
    findings = [
        {"title": f"tool result {i}", "detail": text[:500], "evidence": text[:200]}
        for i, text in enumerate(results[:5], 1)
    ]
    result = {
        "summary": (
            "Stand-in model (services.standins.llm): no reasoning was done; "
            f"{len(results)} tool result(s) are echoed as findings. A human should look."
        ),
        "findings": findings,
        "rootCause": "not investigated (stand-in model)",
        "category": "unknown",
        "confidence": 0.0,
        "recommendations": [],
        "escalate": True,
        "escalationNotes": "answered by the compose stand-in, not a model",
    }
    return {"tool_calls": [(SUBMIT, json.dumps(result))]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, code: int, body: Body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path in ("/healthz", "/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": "stand-in", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request"}})
            return
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        self._send(200, completion(body, answer(body)))


def serve(bind: str) -> ThreadingHTTPServer:
    host, _, port = bind.rpartition(":")
    return ThreadingHTTPServer((host or "127.0.0.1", int(port)), _Handler)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8091", help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = serve(args.bind)
    log.info("stand-in model listening on %s", args.bind)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
