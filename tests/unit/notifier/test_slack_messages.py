"""The Slack layout: Block Kit from the sandboxed template, escaping, overrides."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.notifier.core import messages
from services.notifier.sinks import slack_blocks
from shared.errors import PermanentError


def message(
    outputs: dict[str, Any] | None = None, *, alert: bool = True, **run: Any
) -> dict[str, Any]:
    facts = messages.RunFacts(
        id="r-1",
        phase=run.pop("phase", "Succeeded"),
        workflow="triage",
        namespace="default",
        context={"steps": {"look": {"phase": "Succeeded", "output": {}}}},
        outputs=outputs or {},
        completed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        **run,
    )
    alert_facts = (
        messages.AlertFacts(
            id="a-1",
            status="triaging",
            labels={"alertname": "HighLatency", "namespace": "shop", "pod": "api-7"},
            annotations={"summary": "p99 over 2s", "runbook_url": "https://runbooks/latency"},
            generator_url="http://prom/graph?a=1&b=2",
            alert_name="HighLatency",
            severity="warning",
        )
        if alert
        else None
    )
    return messages.namespace(
        facts, alert_facts, sink_name="slack", sink_type="slack", public_url="http://pf:8080"
    )


def texts(rendered: dict[str, Any]) -> str:
    parts = []
    for block in rendered["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(element["text"])
    return "\n".join(parts)


def test_the_default_layout_shows_the_alert_the_findings_and_the_links() -> None:
    rendered = slack_blocks.render(
        None,
        message(
            {
                "summary": "GC pauses",
                "rootCause": "heap too small",
                "confidence": 0.8,
                "recommendations": "raise -Xmx",
            }
        ),
        ["U0ONCALL"],
        "Sink default/slack template",
    )
    text = texts(rendered)
    for expected in (
        "*HighLatency* `warning`",
        "`shop/api-7`",
        "p99 over 2s",
        "*Summary*\nGC pauses",
        "*Root cause*\nheap too small",
        "*Confidence*\n0.8",
        "*Recommendations*\nraise -Xmx",
        "<http://prom/graph?a=1&amp;b=2|Source>",
        "<https://runbooks/latency|Runbook>",
        "<http://pf:8080/api/v1/runs/r-1|Run>",
        "<@U0ONCALL>",
    ):
        assert expected in text
    assert rendered["text"] == "HighLatency (warning): workflow triage Succeeded"


def test_the_default_layout_without_alert_or_outputs() -> None:
    rendered = slack_blocks.render(
        None, message(alert=False, phase="Failed", error="boom"), [], "t"
    )
    text = texts(rendered)
    assert ":x: *triage* · Investigation failed" in text
    assert "*Error*\n```boom```" in text
    assert "<@" not in text  # no alert, nobody to mention


def test_plain_text_template_is_one_section() -> None:
    rendered = slack_blocks.render("Look at {{ alert.labels.pod }}", message(), [], "t")
    assert rendered["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Look at api-7"}}
    ]


def test_json_that_is_not_blocks_is_refused() -> None:
    with pytest.raises(PermanentError, match="not a list of Block Kit blocks"):
        slack_blocks.render('{"blocks": [1, 2]}', message(), [], "t")


def test_a_missing_field_names_the_sink_and_field() -> None:
    with pytest.raises(PermanentError, match="Sink default/slack template"):
        slack_blocks.render(
            "{{ outputs.nothing.here }}", message(), [], "Sink default/slack template"
        )


def test_resolved_banner_replaces_an_earlier_one() -> None:
    original = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]
    once = slack_blocks.resolved_blocks(original, "2026-01-01T00:00:00+00:00", auto_resolved=False)
    twice = slack_blocks.resolved_blocks(once, "2026-01-01T00:00:00+00:00", auto_resolved=True)
    assert [b.get("block_id") for b in twice] == ["pf-resolved", None]
    assert "auto-resolved" in twice[0]["elements"][0]["text"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x/y", "https://x/y"),
        ("javascript:alert(1)", None),
        ("http://a|b", "http://a%7Cb"),
        ("http://a/<b>", "http://a/&lt;b&gt;"),
        (None, None),
    ],
)
def test_safe_link(url: str | None, expected: str | None) -> None:
    assert slack_blocks.safe_link(url) == expected
