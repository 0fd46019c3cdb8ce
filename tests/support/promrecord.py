"""A Prometheus HTTP API double that answers from a scenario's recorded results.

For the eval scenarios only (the ``promql`` tool itself is tested against a real
Prometheus): ``POST /api/v1/query`` and ``/api/v1/query_range`` answer the first
recording whose ``match`` is a substring of the query, else an empty vector.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordedPrometheus:
    def __init__(self, recordings: Sequence[Mapping[str, Any]]) -> None:
        self.recordings = list(recordings)
        self.queries: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, path: str, form: Mapping[str, str]) -> dict[str, Any]:
        query = form.get("query", "")
        self.queries.append(query)
        found = next((r for r in self.recordings if str(r["match"]) in query), None)
        result = list(found["result"]) if found else []
        if path.endswith("query_range"):
            result = [{"metric": s["metric"], "values": [s["value"]]} for s in result]
            kind = "matrix"
        else:
            kind = "vector"
        return {"status": "success", "data": {"resultType": kind, "result": result}}

    def __enter__(self) -> RecordedPrometheus:
        prometheus = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {
                    k: v[-1]
                    for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()
                }
                body = json.dumps(prometheus.answer(self.path, form)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
