"""The ``alertmanager`` Sink: silence the alert, or annotate it, through API v2.

``silence``: a silence matching every label of the alert (equality matchers) for
``silenceDuration``, ``createdBy: punching-fist``, with the run's summary, its link
and a marker naming the delivery in the comment. Its id is kept on the alert's
Sink state and the silence is expired (``DELETE /api/v2/silence/<id>``) when the
alert resolves. Before creating one on a later attempt, the silences are searched
for the marker, so that an attempt whose answer was lost does not leave two.

The silence is made at the first of two moments: when the run asks a person to
approve a change (``approval_requested``: the alert is being handled, and
AlertManager's repeats would only page people again while someone decides), or
when the run ends. The run's end keeps a silence made while it waited (one per alert
and Sink). A verified change resolves the alert, which expires the silence; a
denied, expired or failed one ends the run, whose result goes to people while the
silence holds for ``silenceDuration``. ``annotate`` waits for the run's end: a
paused run has no findings to show yet.

``annotate``: AlertManager has no call to change an alert's annotations. The alert
is re-posted (``POST /api/v2/alerts``) with its labels and ``startsAt`` and the
annotations ``ai_summary``, ``ai_root_cause`` and ``ai_confidence`` added. The next
time Prometheus re-sends the alert (every ``resend_delay``, 1 minute by default)
its own annotations replace ours: the annotation is a snapshot for whoever looks at
AlertManager soon after the run, not a lasting record (the run and the Slack thread
are that).

Neither action is taken for an alert that is already resolved: a silence would mute
the next occurrence of the same labels, and a re-post would make AlertManager
believe the alert fires again.

While a silence holds, AlertManager mutes the alert's ``resolved`` notification too,
so the notifier's silence watch (``silence_watch``) asks whether AlertManager still
holds the alert: ``alerts_matching`` and ``status`` below are its two calls; the
judging is ``core.silences``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import httpx

from services.notifier.core import silences
from services.notifier.sinks import registries
from shared.domain.notifications import Event
from shared.errors import PermanentError, TemporaryError

CREATED_BY = "punching-fist"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration as the Sink schema accepts it (``1h30m``, ``2d``)."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise PermanentError(f"silenceDuration {text!r} is not a duration such as 1h or 1h30m")
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def marker(delivery_id: str) -> str:
    return f"[punching-fist delivery {delivery_id}]"


def _actions(target: registries.Target) -> list[str]:
    return list(target.config.get("actions") or ["annotate"])


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@registries.register()
class AlertManagerSink(registries.Sink):
    type = "alertmanager"
    events = frozenset({Event.RUN_FINISHED, Event.APPROVAL_REQUESTED})

    def ignores(self, target: registries.Target, event: str) -> str | None:
        if event == Event.APPROVAL_REQUESTED and "silence" not in _actions(target):
            # Annotations sum up an investigation: a paused run has none yet.
            return "alertmanager Sinks act on approval_requested events only to silence"
        return super().ignores(target, event)

    def render(self, target: registries.Target, message: Mapping[str, Any]) -> dict[str, Any]:
        alert = message.get("alert") or {}
        run = message["run"]
        outputs = message.get("outputs") or {}
        summary = _text(outputs.get("summary") or run.get("message") or run.get("error"))
        findings = {
            "ai_summary": summary,
            "ai_root_cause": _text(outputs.get("rootCause")),
            "ai_confidence": _text(outputs.get("confidence")),
        }
        labels = dict(alert.get("labels") or {})
        asking = message.get("event") == Event.APPROVAL_REQUESTED
        if asking:
            what = (message.get("approval") or {}).get("what") or "a change"
            summary = f"Waiting for a person to approve {what}"
        return {
            "labels": labels,
            "actions": ["silence"] if asking else _actions(target),
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in sorted(labels.items())
            ],
            "comment": "\n".join(
                part
                for part in (
                    summary or f"Workflow {run['workflow']} ended {run['phase']}",
                    run["url"],
                )
                if part
            ),
            "duration": parse_duration(str(target.config.get("silenceDuration", "1h"))),
            "alert": {
                "labels": labels,
                "annotations": {
                    **dict(alert.get("annotations") or {}),
                    **{key: value for key, value in findings.items() if value},
                },
                "startsAt": alert.get("startsAt"),
                "generatorURL": alert.get("generatorURL") or None,
            },
        }

    def send(self, payload: Any, ctx: registries.SendContext) -> registries.Sent:
        if not payload["labels"]:
            raise PermanentError("an alertmanager Sink needs a run started by an alert")
        if ctx.alert_resolved:
            return registries.Sent({"skipped": "the alert is resolved already"})
        base = str(ctx.target.config["url"]).rstrip("/")
        actions = payload["actions"]
        reference: dict[str, Any] = {}
        state: dict[str, Any] = {}
        if "silence" in actions:
            silence_id = self._silence(base, payload, ctx)
            reference["silenceId"] = silence_id
            if ctx.state is None or ctx.state.silence_id != silence_id:
                state["silence_id"] = silence_id  # a new one, for the alert's resolution
        if "annotate" in actions:
            alert = {k: v for k, v in payload["alert"].items() if v is not None}
            ctx.http.post(f"{base}/api/v2/alerts", json=[alert]).raise_for_status()
            reference["annotated"] = True
        return registries.Sent(reference, state)

    @staticmethod
    def _silence(base: str, payload: Mapping[str, Any], ctx: registries.SendContext) -> str:
        if ctx.state is not None and ctx.state.silence_id:
            # One silence per alert and Sink: a later run's delivery keeps it.
            return ctx.state.silence_id
        tag = marker(ctx.delivery_id)
        if ctx.may_have_sent:
            response = ctx.http.get(f"{base}/api/v2/silences")
            response.raise_for_status()
            for silence in response.json():
                if (
                    silence.get("createdBy") == CREATED_BY
                    and tag in (silence.get("comment") or "")
                    and (silence.get("status") or {}).get("state") != "expired"
                ):
                    return str(silence["id"])
        now = dt.datetime.now(dt.UTC)
        body = {
            "matchers": payload["matchers"],
            "startsAt": now.isoformat(),
            "endsAt": (now + dt.timedelta(seconds=payload["duration"])).isoformat(),
            "createdBy": CREATED_BY,
            "comment": f"{payload['comment']}\n{tag}",
        }
        response = ctx.http.post(f"{base}/api/v2/silences", json=body)
        response.raise_for_status()
        silence_id = response.json().get("silenceID")
        if not silence_id:
            raise PermanentError(
                f"AlertManager answered without a silenceID: {response.text[:200]}"
            )
        return str(silence_id)

    def resolve(self, ctx: registries.ResolveContext) -> Mapping[str, Any]:
        silence_id = ctx.state.silence_id
        if not silence_id or ctx.progress.get("expired"):
            return {}
        base = str(ctx.target.config["url"]).rstrip("/")
        response = ctx.http.delete(f"{base}/api/v2/silence/{silence_id}")
        # 404: gone already (garbage-collected); AlertManager answers 500 with
        # "already expired" for one that ended: either way there is nothing to undo.
        if response.status_code == 404 or "already expired" in response.text:
            return {"expired": True}
        response.raise_for_status()
        return {"expired": True}


# -- the silence watch's calls ------------------------------------------------------


def _reply(response: httpx.Response) -> silences.Reply:
    try:
        body = response.json()
    except ValueError:
        body = None
    return silences.Reply(response.status_code, body)


def _get(http: httpx.Client, url: str, params: httpx.QueryParams | None = None) -> silences.Reply:
    try:
        return _reply(http.get(url, params=params))
    except httpx.HTTPError as exc:  # only transport errors: no raise_for_status here
        raise TemporaryError(f"AlertManager at {url} unreachable: {exc}") from exc


def alerts_matching(http: httpx.Client, base: str, labels: Mapping[str, str]) -> silences.Reply:
    """``GET /api/v2/alerts`` of the alerts whose labels include ``labels``, whatever
    their state (silenced, inhibited and unprocessed ones too: ours is silenced).
    TemporaryError when AlertManager cannot be reached; any HTTP answer is returned."""
    params = httpx.QueryParams(
        [
            ("active", "true"),
            ("silenced", "true"),
            ("inhibited", "true"),
            ("unprocessed", "true"),
            *(("filter", matcher) for matcher in silences.filter_matchers(labels)),
        ]
    )
    return _get(http, f"{base.rstrip('/')}/api/v2/alerts", params)


def status(http: httpx.Client, base: str) -> silences.Reply:
    """``GET /api/v2/status`` (its ``uptime`` says when AlertManager started)."""
    return _get(http, f"{base.rstrip('/')}/api/v2/status")
