"""``promql``: an instant or range query against the Workflow's Prometheus.

The query is sent as a form parameter of Prometheus' HTTP API (never spliced into
anything), bounded in length, given a server-side ``timeout`` as well as the
client's, and the answer is reduced to the highest series so that one query over a
thousand pods does not fill the model's context.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from services.engine.core import reduction
from services.engine.tools import registries
from services.engine.tools.registries import Status, ToolContext, ToolResult, ToolSettings

MAX_QUERY = 2000
_DURATION = re.compile(r"^([1-9][0-9]{0,4})(s|m|h|d)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_RANGE = 7 * 86400
# Points per series a range query asks for when no step is given.
POINTS = 60


def seconds_of(duration: str, what: str) -> int:
    match = _DURATION.match(duration)
    if not match:
        raise registries.ToolError(f"{what} must look like 30s, 15m, 2h or 1d, not {duration!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def range_params(window: str, step_text: str) -> dict[str, str]:
    """start, end and step for a range query over the last ``window``."""
    span = seconds_of(window, "range")
    if span > MAX_RANGE:
        raise registries.ToolError("range may be at most 7d")
    step = seconds_of(step_text, "step") if step_text else max(15, span // POINTS)
    if span / step > 11_000:
        raise registries.ToolError("range/step asks for more than 11000 points per series")
    end = time.time()
    return {"start": f"{end - span:.3f}", "end": f"{end:.3f}", "step": str(step)}


def http_client(ctx: ToolContext) -> httpx.Client:
    client: httpx.Client = ctx.client("http", lambda: httpx.Client(follow_redirects=False))
    return client


@registries.register()
class PromQL(registries.Tool):
    name = "promql"
    description = (
        "Run a PromQL query against the cluster's Prometheus. Without range: the value now. "
        "With range (e.g. 30m) and optional step (e.g. 1m): the series over that window, "
        "reduced to the highest series with their latest and peak values."
    )
    parameters = registries.parameters(
        {
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY},
            "range": {"type": "string", "maxLength": 8},
            "step": {"type": "string", "maxLength": 8},
        },
        required=["query"],
    )

    def unavailable(self, settings: ToolSettings) -> str | None:
        return (
            None
            if settings.prometheus_url
            else "no Prometheus configured (runtime.tools.prometheus.url)"
        )

    def _invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        base = ctx.settings.prometheus_url.rstrip("/")
        if not base:
            raise registries.ToolUnavailableError(
                "no Prometheus configured (runtime.tools.prometheus.url)"
            )
        query = str(arguments["query"])
        timeout = registries.require_deadline(ctx, "promql")
        params: dict[str, str] = {"query": query, "timeout": f"{max(1, int(timeout))}s"}
        window = str(arguments.get("range") or "")
        if window:
            params.update(range_params(window, str(arguments.get("step") or "")))
            url = f"{base}/api/v1/query_range"
        else:
            url = f"{base}/api/v1/query"
        try:
            response = http_client(ctx).post(url, data=params, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise registries.ToolUnavailableError(
                f"Prometheus at {base} did not answer within {timeout:.0f}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise registries.ToolUnavailableError(
                f"cannot reach Prometheus at {base}: {exc}"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or body.get("status") != "success":
            error = body.get("error") or response.text[:300]
            kind = body.get("errorType") or f"HTTP {response.status_code}"
            raise registries.ToolError(f"Prometheus refused the query ({kind}): {error}")
        data = body.get("data") or {}
        result_type = data.get("resultType")
        result = data.get("result")
        if result_type in {"scalar", "string"}:
            return ToolResult(
                Status.OK,
                f"{result_type}: {result[1] if isinstance(result, list) else result}",
                {"series": [], "scalar": result},
            )
        if not result:
            return ToolResult(Status.EMPTY, "no series matched", {"series": []})
        top, cut = reduction.top_series(result, ctx.settings.promql_max_series)
        lines = []
        for row in top:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(row["metric"].items()))
            value = f"value={row['value']:.4g}"
            if window:
                value += f" peak={row['peak']:.4g}"
            lines.append(f"{{{labels}}} {value}")
        if cut:
            lines.append(f"[{cut} lower series not shown]")
        return ToolResult(Status.OK, "\n".join(lines), {"series": top, "total": len(result)})
