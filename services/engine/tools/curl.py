"""``curl``: an HTTP GET or HEAD to a host the Workflow allows, as a health check.

A model choosing URLs is a server-side request forgery waiting to happen, so:

* only ``http``/``https``, no credentials in the URL, and the host must match the
  Workflow's allowlist (``runtime.tools.curl.hosts``; exact names, or ``*.domain``);
* the name is resolved once and every address checked: loopback, link-local,
  unspecified, multicast and cloud-metadata addresses are refused unless the
  allowlist names that very IP (tests on 127.0.0.1 do); the metadata service never;
* the request then goes to the checked address (the URL's host is kept as the
  ``Host`` header and TLS server name), so a second DNS answer cannot swap it;
* redirects are followed by hand, at most three, each one checked the same way;
* a timeout, and the body is read up to a cap and the rest dropped.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from services.engine.tools import registries
from services.engine.tools.promql import http_client
from services.engine.tools.registries import Status, ToolContext, ToolResult, ToolSettings

MAX_REDIRECTS = 3
# Cloud metadata endpoints (AWS/GCP/Azure/OpenStack, AWS IPv6, Alibaba): never.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_HEADERS = ("content-type", "content-length", "location", "retry-after", "server")

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise registries.ToolError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    return sorted({str(info[4][0]) for info in infos})


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    host = host.lower().rstrip(".")
    for listed in allowed:
        entry = listed.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]:
            return True
        if host == entry:
            return True
    return False


def address_refused(address: str, allowed: frozenset[str]) -> str | None:
    ip = ipaddress.ip_address(address)
    if ip in METADATA:
        return f"{address} is a cloud metadata address"
    if address in allowed or ip.compressed in allowed:
        return None
    for test, what in (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_multicast, "multicast"),
    ):
        if test:
            return f"{address} is a {what} address"
    return None


def check(url: str, settings: ToolSettings, resolver: Resolver) -> tuple[httpx.URL, str, str]:
    """(URL pointed at the checked address, Host header, server name) or ToolDeniedError."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise registries.ToolError(f"not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise registries.ToolDeniedError(f"only http and https URLs, not {parsed.scheme!r}")
    if parsed.userinfo:
        raise registries.ToolDeniedError("URLs with credentials are refused")
    host = parsed.host
    if not host:
        raise registries.ToolError("the URL has no host")
    allowed = settings.curl_hosts
    if not host_allowed(host, allowed):
        listed = ", ".join(sorted(allowed)) or "none"
        raise registries.ToolDeniedError(
            f"host {host!r} is not in the Workflow's curl allowlist ({listed})"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = [host] if ipaddress.ip_address(host) else []
    except ValueError:
        addresses = resolver(host, port)
    if not addresses:
        raise registries.ToolError(f"{host!r} resolved to no address")
    for address in addresses:
        reason = address_refused(address, allowed)
        if reason:
            raise registries.ToolDeniedError(f"refused: {host} -> {reason}")
    pinned = parsed.copy_with(host=addresses[0])
    host_header = host if parsed.port is None else f"{host}:{parsed.port}"
    return pinned, host_header, host


@registries.register()
class Curl(registries.Tool):
    name = "curl"
    description = (
        "HTTP GET or HEAD to a URL whose host the Workflow allows (a health or status "
        "endpoint). Returns the status code, a few headers and the start of the body; "
        "connection failures and timeouts come back as errors saying which."
    )
    parameters = registries.parameters(
        {
            "url": {"type": "string", "minLength": 1, "maxLength": 2048},
            "method": {"type": "string", "enum": ["GET", "HEAD"]},
        },
        required=["url"],
    )

    def unavailable(self, settings: ToolSettings) -> str | None:
        return None if settings.curl_hosts else "no hosts allowed (runtime.tools.curl.hosts)"

    def _invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        url = str(arguments["url"])
        method = str(arguments.get("method") or "GET")
        timeout = registries.require_deadline(ctx, "curl")
        client = http_client(ctx)
        started = time.monotonic()
        hops: list[str] = []
        for _ in range(MAX_REDIRECTS + 1):
            pinned, host_header, server_name = check(url, ctx.settings, ctx.resolver or resolve)
            request = client.build_request(
                method,
                pinned,
                headers={"Host": host_header, "User-Agent": "punchingfist-agent"},
                timeout=timeout,
                extensions={"sni_hostname": server_name},
            )
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise registries.ToolError(
                    f"{method} {url}: timed out after {timeout:.0f}s"
                ) from exc
            except httpx.HTTPError as exc:
                raise registries.ToolError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            try:
                if response.is_redirect and response.headers.get("location"):
                    hops.append(f"{response.status_code} -> {response.headers['location']}")
                    url = urllib.parse.urljoin(url, response.headers["location"])
                    continue
                body, dropped = (
                    _read_capped(response, ctx.settings.curl_max_bytes)
                    if method == "GET"
                    else (b"", 0)
                )
            finally:
                response.close()
            return self._answer(
                url,
                method,
                response,
                body=body,
                dropped=dropped,
                hops=hops,
                seconds=time.monotonic() - started,
            )
        raise registries.ToolError(f"more than {MAX_REDIRECTS} redirects: {'; '.join(hops)}")

    def _answer(
        self,
        url: str,
        method: str,
        response: httpx.Response,
        *,
        body: bytes,
        dropped: int,
        hops: list[str],
        seconds: float,
    ) -> ToolResult:
        lines = [f"{method} {url}: HTTP {response.status_code} in {seconds:.3f}s"]
        lines.extend(f"redirect {hop}" for hop in hops)
        lines.extend(
            f"{name}: {response.headers[name]}" for name in _HEADERS if name in response.headers
        )
        text = body.decode("utf-8", errors="replace")
        if text:
            lines.append("body:")
            lines.append(text)
        if dropped:
            # _read_capped stops counting at 16 times the cap: a lower bound then.
            lines.append(f"[{dropped} or more further bytes of body not kept]")
        data = {"url": url, "status_code": response.status_code, "seconds": seconds}
        return ToolResult(Status.OK, "\n".join(lines), data)


def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, int]:
    kept = bytearray()
    dropped = 0
    for chunk in response.iter_bytes():
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        dropped += max(0, len(chunk) - max(room, 0))
        if dropped > 16 * cap:
            break  # enough to say it was big; do not download the rest
    return bytes(kept), dropped
