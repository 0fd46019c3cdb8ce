"""The ``webhook`` Sink: POST the run's result as JSON to any HTTP endpoint.

Body: ``{"alert", "run", "outputs", "steps", "event", "approval", "delivery": {"id",
"sink"}}`` (``event``: ``run_finished`` or ``approval_requested``). Headers:
the Sink's ``headers``, ``Authorization: Bearer <secretRef>`` when one is set, and
``Idempotency-Key: <delivery id>``: a delivery is sent again only when an attempt's
answer was lost (crash, timeout), and the key lets the receiver drop the repeat.

2xx is delivered; 408 and 429 are retried (honouring Retry-After), other 4xx fail at
once; 5xx and connection errors are retried. Redirects are not followed: a moved
endpoint is a configuration error, and following it would re-send the bearer token
to wherever it points.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.notifier.sinks import registries
from shared.errors import PermanentError


@registries.register()
class WebhookSink(registries.Sink):
    type = "webhook"
    tells_humans = True

    def render(self, target: registries.Target, message: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "alert": message.get("alert") or None,
            "run": message["run"],
            "outputs": message.get("outputs") or {},
            "steps": message.get("steps") or {},
            "event": message.get("event") or "run_finished",
            "approval": message.get("approval") or None,
        }

    def send(self, payload: Any, ctx: registries.SendContext) -> registries.Sent:
        config = ctx.target.config
        headers = {
            **dict(config.get("headers") or {}),
            "Content-Type": "application/json",
            "Idempotency-Key": ctx.delivery_id,
            "User-Agent": "punching-fist-notifier",
        }
        if config.get("secretRef"):
            headers["Authorization"] = f"Bearer {ctx.secret(config['secretRef'])}"
        body = {**payload, "delivery": {"id": ctx.delivery_id, "sink": ctx.target.name}}
        response = ctx.http.post(config["url"], json=body, headers=headers, follow_redirects=False)
        if 300 <= response.status_code < 400:
            raise PermanentError(
                f"webhook answered {response.status_code} (redirects are not followed; "
                f"Location: {response.headers.get('location', '-')})"
            )
        response.raise_for_status()
        return registries.Sent({"status": response.status_code})
