"""The baseline: gunicorn + Flask that only parses the webhook JSON and answers."""

from __future__ import annotations

import json

from flask import Flask, request

app = Flask("bare")


@app.post("/webhook/<name>")
def receive(name: str) -> tuple[dict[str, int], int]:
    body = json.loads(request.get_data())
    return {"alerts": len(body["alerts"])}, 200
