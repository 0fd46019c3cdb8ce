"""The ``slack`` Sink: Block Kit messages through the Web API, one thread per alert.

With ``threadUpdates`` (the default) the first message about an alert occurrence is
its thread's parent; its channel id and ``ts`` go to the alert's Sink state, and
every later message about the alert (another run's result, an escalation) is a
reply in that thread. When the alert resolves, the parent is edited
(``chat.update``) to say so and a reply says when and how. A run that pauses for
approval posts the proposed change with Approve / Deny buttons (in the thread, or
as its parent); once decided, that message is edited (``chat.update``, by
``notifier.approval_decided``) to say who decided and when, without the buttons.

Exactly once. The store gives one delivery the claim on the parent, so two runs of
one alert never both post one. Each message carries Slack message metadata naming
its delivery (``event_type: punchingfist_notification``). A later attempt of a
delivery (after a crash between the post and its record, or a lost answer) first
looks for that metadata (``conversations.history`` since the claim for a parent,
``conversations.replies`` for a reply) and records the message it finds instead
of posting a second one. The bot therefore needs ``chat:write`` and
``channels:history`` (``groups:history`` for private channels), and
``channels:read`` when ``channel`` is a name rather than an id.

Rate limits: a 429 is retried inside the call by slack-sdk's
``RateLimitErrorRetryHandler`` when its Retry-After is short
(``PF_NOTIFIER_RATE_LIMIT_WAIT_MAX``); a longer one goes back to the queue with
that delay. slack-sdk's default connection-error retry is left out: a reset
connection may have posted the message, and the lookup above is the safe retry.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from services.notifier.sinks import registries, slack_blocks
from shared.errors import PermanentError, TemporaryError

DEFAULT_API_URL = "https://slack.com/api/"
EVENT_TYPE = "punchingfist_notification"
# Slack errors that say "later" rather than "never".
_TEMPORARY = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
# Messages scanned when looking for one sent before a crash (pages of 200).
_LOOKUP_PAGES = 5
# Seconds before the claim that a lookup still searches (clock differences).
_LOOKUP_SLACK = 120.0


class _ShortRateLimitRetry(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, only when Retry-After is short enough to wait here."""

    def __init__(self, wait_max: float) -> None:
        super().__init__(max_retry_count=1)
        self._wait_max = wait_max

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = registries.retry_after({k.lower(): v[0] for k, v in response.headers.items()})
        return wait is None or wait <= self._wait_max


class _Clients:
    """One WebClient per (API URL, token) and process: it keeps no connection, but
    its retry handlers and settings are built once."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str, float, float], WebClient] = {}
        self._lock = threading.Lock()

    def get(self, base_url: str, token: str, timeout: float, wait_max: float) -> WebClient:
        key = (base_url, token, timeout, wait_max)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                handlers: list[RetryHandler] = [_ShortRateLimitRetry(wait_max)]
                client = WebClient(
                    token=token, base_url=base_url, timeout=int(timeout), retry_handlers=handlers
                )
                self._clients[key] = client
            return client


def _metadata(kind: str, delivery_id: str, alert_id: str | None) -> dict[str, Any]:
    return {
        "event_type": EVENT_TYPE,
        "event_payload": {"kind": kind, "delivery_id": delivery_id, "alert_id": alert_id or ""},
    }


def _is_ours(message: Mapping[str, Any], kind: str, key: str, value: str) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(
        metadata.get("event_type") == EVENT_TYPE
        and payload.get("kind") == kind
        and payload.get(key) == value
    )


@registries.register()
class SlackSink(registries.Sink):
    type = "slack"
    tells_humans = True

    def __init__(self) -> None:
        self._clients = _Clients()
        self._channel_ids: dict[tuple[str, str], str] = {}

    def threaded(self, target: registries.Target) -> bool:
        return bool(target.config.get("threadUpdates", True))

    def render(self, target: registries.Target, message: Mapping[str, Any]) -> dict[str, Any]:
        return slack_blocks.render(
            target.config.get("template"),
            message,
            list(target.config.get("mentions") or []),
            target.where("template"),
        )

    def _client(self, config: Mapping[str, Any], ctx: Any) -> WebClient:
        token = ctx.secret(config["tokenSecretRef"])
        return self._clients.get(
            str(config.get("apiUrl") or DEFAULT_API_URL),
            token,
            ctx.settings.http_timeout,
            ctx.settings.rate_limit_wait_max,
        )

    # -- send --------------------------------------------------------------------

    def send(self, payload: Any, ctx: registries.SendContext) -> registries.Sent:
        config = ctx.target.config
        client = self._client(config, ctx)
        state = ctx.state if self.threaded(ctx.target) else None
        thread_ts = state.thread_ts if state is not None else None
        channel = str(state.channel if state is not None and thread_ts else config["channel"])
        metadata = _metadata("run", ctx.delivery_id, ctx.alert_id)
        found = None
        if ctx.may_have_sent:
            found = self._find_sent(client, config, ctx, channel, thread_ts)
        posted_channel: str
        ts: str
        if found is not None:
            posted_channel, ts = found
        else:
            kwargs: dict[str, Any] = {
                "channel": channel,
                "blocks": payload["blocks"],
                "text": payload["text"],
                "metadata": metadata,
                "unfurl_links": False,
            }
            if thread_ts:
                kwargs["thread_ts"] = thread_ts
            response = client.chat_postMessage(**kwargs)
            answered_channel, answered_ts = response.get("channel"), response.get("ts")
            if not answered_channel or not answered_ts:
                # slack-sdk reads a missing field as None: a stand-in that answers just
                # {"ok": true} would otherwise leave a thread without a parent.
                raise PermanentError(f"Slack answered ok without channel and ts: {response.data!r}")
            posted_channel, ts = str(answered_channel), str(answered_ts)
        self._channel_ids[(str(config.get("apiUrl")), str(config["channel"]))] = posted_channel
        reference: dict[str, Any] = {"channel": posted_channel, "ts": ts, "threadTs": thread_ts}
        if found is not None:
            reference["found"] = True
        new_state: dict[str, Any] = {}
        if state is not None and state.owns_parent and not thread_ts:
            new_state = {"channel": posted_channel, "thread_ts": ts}
        return registries.Sent(reference, new_state)

    def _find_sent(
        self,
        client: WebClient,
        config: Mapping[str, Any],
        ctx: registries.SendContext,
        channel: str,
        thread_ts: str | None,
    ) -> tuple[str, str] | None:
        """The message an earlier attempt of this delivery posted, if it did."""
        channel_id = self._channel_id(client, config, channel)
        if channel_id is None:
            return None
        if thread_ts:
            messages = self._replies(client, channel_id, thread_ts)
        else:
            messages = self._history(client, channel_id, max(ctx.created_at - _LOOKUP_SLACK, 0))
        for message in messages:
            if _is_ours(message, "run", "delivery_id", ctx.delivery_id):
                return channel_id, str(message["ts"])
        return None

    def _channel_id(self, client: WebClient, config: Mapping[str, Any], channel: str) -> str | None:
        if _CHANNEL_ID.match(channel):
            return channel
        key = (str(config.get("apiUrl")), str(config["channel"]))
        if key in self._channel_ids:
            return self._channel_ids[key]
        name = channel.lstrip("#")
        cursor = None
        for _ in range(20):
            page = client.conversations_list(
                types="public_channel,private_channel", limit=1000, cursor=cursor
            )
            for conversation in page.get("channels") or []:
                if conversation.get("name") == name:
                    self._channel_ids[key] = str(conversation["id"])
                    return self._channel_ids[key]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    @staticmethod
    def _history(client: WebClient, channel: str, oldest: float) -> Iterator[Mapping[str, Any]]:
        cursor = None
        for _ in range(_LOOKUP_PAGES):
            page = client.conversations_history(
                channel=channel,
                oldest=f"{oldest:.6f}",
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            yield from page.get("messages") or []
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    @staticmethod
    def _replies(client: WebClient, channel: str, ts: str) -> Iterator[Mapping[str, Any]]:
        cursor = None
        for _ in range(_LOOKUP_PAGES):
            page = client.conversations_replies(
                channel=channel, ts=ts, include_all_metadata=True, limit=200, cursor=cursor
            )
            yield from page.get("messages") or []
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    # -- update ------------------------------------------------------------------

    def update(self, payload: Any, ctx: registries.UpdateContext) -> Mapping[str, Any] | None:
        """``chat.update`` of the message a delivery posted (the approval request, once
        decided: the buttons give way to who decided). Idempotent: a retry edits the
        message to the same thing again."""
        channel, ts = ctx.reference.get("channel"), ctx.reference.get("ts")
        if not channel or not ts:
            return None
        client = self._client(ctx.target.config, ctx)
        blocks = list(payload["blocks"])
        if not ctx.reference.get("threadTs"):
            # A thread's parent may carry the alert's "Resolved" line by now: keep it.
            current = self._parent(client, str(channel), str(ts)) or {}
            banner = [b for b in current.get("blocks") or [] if b.get("block_id") == "pf-resolved"]
            blocks = [*banner, *blocks][: slack_blocks.MAX_BLOCKS]
        client.chat_update(
            channel=str(channel),
            ts=str(ts),
            blocks=blocks,
            text=payload["text"],
            metadata=_metadata("run", ctx.delivery_id, ctx.alert_id),
        )
        return {"updated": True}

    # -- failures ----------------------------------------------------------------

    def classify(self, exc: Exception) -> PermanentError | TemporaryError:
        if isinstance(exc, SlackApiError):
            response = exc.response
            status = int(getattr(response, "status_code", 0) or 0)
            data = response.data if isinstance(response.data, Mapping) else {}
            error = str(data.get("error") or f"HTTP {status}")
            message = f"Slack {error} (HTTP {status})"
            if status == 429 or error == "ratelimited":
                headers = {k.lower(): v for k, v in (response.headers or {}).items()}
                return TemporaryError(message, delay=registries.retry_after(headers) or 1.0)
            if status >= 500 or error in _TEMPORARY:
                return TemporaryError(message)
            # invalid_auth, channel_not_found, not_in_channel, invalid_blocks, ...
            return PermanentError(message)
        if isinstance(exc, SlackRequestError):
            return PermanentError(f"Slack request could not be made: {exc}")
        return super().classify(exc)

    # -- resolution --------------------------------------------------------------

    def resolve(self, ctx: registries.ResolveContext) -> Mapping[str, Any]:
        state = ctx.state
        if not state.thread_ts or not state.channel:
            return {}
        client = self._client(ctx.target.config, ctx)
        alert = ctx.alert
        resolved_at = alert.get("resolvedAt")
        auto = bool(alert.get("autoResolved"))
        progress: dict[str, Any] = {}
        # chat.update is idempotent: a retry edits the parent to the same thing again.
        parent = self._parent(client, state.channel, state.thread_ts)
        blocks = slack_blocks.resolved_blocks(
            list(parent.get("blocks") or []) if parent else [], resolved_at, auto
        )
        client.chat_update(
            channel=state.channel,
            ts=state.thread_ts,
            blocks=blocks,
            text=slack_blocks.escape(f"Resolved: {alert.get('name') or 'alert'}"),
        )
        progress["updated"] = True
        reply_ts = ctx.progress.get("replyTs")
        if not reply_ts and ctx.attempt > 1:
            for message in self._replies(client, state.channel, state.thread_ts):
                if _is_ours(message, "resolved", "alert_id", ctx.alert_id):
                    reply_ts = str(message["ts"])
                    break
        if not reply_ts:
            how = (
                "auto-resolved: the workflow found nothing left for a human"
                if auto
                else "AlertManager reported it resolved"
            )
            response = client.chat_postMessage(
                channel=state.channel,
                thread_ts=state.thread_ts,
                text=f":white_check_mark: Resolved at {resolved_at} ({how}).",
                metadata={
                    "event_type": EVENT_TYPE,
                    "event_payload": {"kind": "resolved", "alert_id": ctx.alert_id},
                },
            )
            reply_ts = response.get("ts")
        progress["replyTs"] = reply_ts
        return progress

    @staticmethod
    def _parent(client: WebClient, channel: str, ts: str) -> Mapping[str, Any] | None:
        page = client.conversations_history(
            channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
        )
        for message in page.get("messages") or []:
            if message.get("ts") == ts:
                return dict(message)
        return None
