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
from collections.abc import Callable


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


async def _closed_loop(
    host: str, port: int, make: Callable[[int], bytes], connections: int, seconds: float
) -> Result:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    counter = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal counter, errors
        while time.perf_counter() < stop_at:
            counter += 1
            payload = make(counter)
            started = time.perf_counter()
            try:
                status = await _one(host, port, payload)
            except OSError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    return Result(len(latencies), errors, elapsed, latencies, statuses)


async def _open_loop(
    host: str, port: int, make: Callable[[int], bytes], rate: float, seconds: float
) -> Result:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    total = int(rate * seconds)
    began = time.perf_counter()

    async def one(index: int) -> None:
        nonlocal errors
        scheduled = began + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        payload = make(index + 1)
        try:
            status = await _one(host, port, payload)
        except OSError:
            errors += 1
            return
        # Measured from the scheduled start: a late start counts against the server.
        latencies.append((time.perf_counter() - scheduled) * 1000)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    return Result(len(latencies), errors, time.perf_counter() - began, latencies, statuses)


async def _batch(host: str, port: int, payloads: list[bytes], connections: int) -> Result:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    queue = iter(payloads)

    async def worker() -> None:
        nonlocal errors
        # One shared iterator: each body is taken by exactly one connection, in order.
        for payload in queue:
            started = time.perf_counter()
            try:
                status = await _one(host, port, payload)
            except OSError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    return Result(len(latencies), errors, elapsed, latencies, statuses)


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
    return asyncio.run(_batch(url_host, port, payloads, connections))


def closed_loop(
    url_host: str,
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
) -> Result:
    def make(index: int) -> bytes:
        return _request(url_host, port, path, body_for(index), headers)

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
    def make(index: int) -> bytes:
        return _request(url_host, port, path, body_for(index), headers)

    return asyncio.run(_open_loop(url_host, port, make, rate, seconds))
