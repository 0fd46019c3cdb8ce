"""A small HTTP/1.1 load generator on asyncio streams, for loopback benchmarks.

Three modes: closed loop (N connections, each sends its next request when the last one
answered; measures capacity), open loop (requests start on a fixed schedule
whatever the server does; measures latency at a given rate without coordinated
omission) and a fixed batch (each of a list of bodies sent exactly once over N
connections, in order; what a storm of notifications is). One connection per request, as gunicorn's sync workers close after each.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator


@dataclasses.dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(host: str, port: int, payload: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # until the server closes
        return int(status_line.split()[1])
    finally:
        writer.close()


@dataclasses.dataclass
class _Tally:
    """What the requests of one run got back: a latency and a status per answer, and
    the connections that failed (counted, not retried)."""

    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    errors: int = 0

    async def send(self, host: str, port: int, payload: bytes, since: float | None = None) -> None:
        """One request; its latency runs from ``since`` (default: now, as it is sent)."""
        started = time.perf_counter() if since is None else since
        try:
            status = await _one(host, port, payload)
        except OSError:
            self.errors += 1
            return
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def result(self, seconds: float) -> Result:
        return Result(
            len(self.latencies_ms), self.errors, seconds, self.latencies_ms, self.statuses
        )


async def _connections(host: str, port: int, payloads: Iterator[bytes], connections: int) -> Result:
    """``connections`` at once, each sending its next payload when the last one was
    answered, until ``payloads`` runs out."""
    tally = _Tally()

    async def connection() -> None:
        # One shared iterator: each payload is taken by exactly one connection, in order.
        for payload in payloads:
            await tally.send(host, port, payload)

    began = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return tally.result(time.perf_counter() - began)


async def _closed_loop(
    host: str, port: int, make: Callable[[int], bytes], connections: int, seconds: float
) -> Result:
    stop_at = time.perf_counter() + seconds

    def until_stop() -> Iterator[bytes]:
        index = 0
        while time.perf_counter() < stop_at:
            index += 1
            yield make(index)

    return await _connections(host, port, until_stop(), connections)


async def _open_loop(
    host: str, port: int, make: Callable[[int], bytes], rate: float, seconds: float
) -> Result:
    tally = _Tally()
    total = int(rate * seconds)
    began = time.perf_counter()

    async def one(index: int) -> None:
        scheduled = began + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # Measured from the scheduled start: a late start counts against the server.
        await tally.send(host, port, make(index + 1), since=scheduled)

    await asyncio.gather(*(one(i) for i in range(total)))
    return tally.result(time.perf_counter() - began)


def _requests(
    host: str, port: int, path: str, body_for: Callable[[int], bytes], headers: dict[str, str]
) -> Callable[[int], bytes]:
    def make(index: int) -> bytes:
        return _request(host, port, path, body_for(index), headers)

    return make


def batch(
    url_host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
) -> Result:
    """Send every body once, ``connections`` at a time; a failed connection is an error,
    not retried (the caller decides what a lost request means)."""
    payloads = [_request(url_host, port, path, body, headers) for body in bodies]
    return asyncio.run(_connections(url_host, port, iter(payloads), connections))


def closed_loop(
    url_host: str,
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
) -> Result:
    make = _requests(url_host, port, path, body_for, headers)
    return asyncio.run(_closed_loop(url_host, port, make, connections, seconds))


def open_loop(
    url_host: str,
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    headers: dict[str, str],
    rate: float,
    seconds: float,
) -> Result:
    make = _requests(url_host, port, path, body_for, headers)
    return asyncio.run(_open_loop(url_host, port, make, rate, seconds))
