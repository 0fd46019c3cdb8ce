"""The gunicorn worker of ingest: a request is read whole before a thread runs it.

Why not gunicorn's own workers. A sync worker gives a connection the whole process
from ``accept`` until the response is sent: two clients trickling header bytes held
both workers, and a legitimate webhook waited 39 s. gunicorn's gthread worker
(``gunicorn/workers/gthread.py``, 27.x) waits up to 5 s for a first byte outside its
thread pool, but once one byte has arrived the connection goes to a thread that
reads the rest from a blocking socket with no timeout: one byte and a stall hold the
thread for as long as the client likes, and the arbiter never replaces a gthread
worker, because its main loop keeps sending heartbeats.

What this worker does (a ``ThreadWorker`` subclass). A new connection stays in the
worker's selector until the request line, the headers and the body (Content-Length,
or chunked up to its last chunk) have all arrived; each readiness event reads what
is there, without blocking. Only a complete request reaches a thread, with its bytes
already in the parser's buffer, so the application never waits on a client. A client
that has not sent its whole request ``read_timeout`` seconds after connecting
(``PF_INGEST_READ_TIMEOUT``) gets ``408`` and is closed: that bounds what a slow
client holds to one socket and a buffer, for that long. Anything this module does
not frame itself (a head over gunicorn's limits, malformed framing, a body over
``PF_INGEST_MAX_BODY_BYTES``) is handed to gunicorn's parser and Flask as it is, to
be refused there with the usual 4xx; reads done on its behalf still end at the same
deadline.

Trade-offs, on purpose:

- Connections are not kept alive (as with the sync workers before): every request
  arrives on a new connection, so every request is buffered by the rule above.
- After the response the connection is half-closed and left in the selector until
  the client closes its side (at most ``LINGER_SECONDS``), instead of gunicorn's
  ``close_graceful``, which waits for that in the event loop: a client that never
  closes would stop the worker from reading anyone else's request meanwhile.
- One request thread per worker process by default: the concurrency of the sync
  workers, without a thread-safety review of the request path.
- A request that runs longer than gunicorn's ``timeout`` stops the worker's
  heartbeat, so the arbiter replaces the worker, as it replaced a stuck sync worker.
- It relies on ThreadWorker internals (``accept``, ``enqueue_req``,
  ``murder_pending``, ``TConn.parser``); setup.cfg pins gunicorn's major version.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import html
import json
import logging
import re
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.workers import gthread

log = logging.getLogger(__name__)

# Bytes read per readiness event; a webhook of a few KiB arrives in one.
RECV_BYTES = 64 * 1024
# Seconds a closed connection waits for the client's own close after the response
# (gunicorn's close_graceful lingers as long, but blocking the event loop).
LINGER_SECONDS = 2.0
# Longest chunk-size line (with extensions) accepted before handing over.
MAX_CHUNK_LINE = 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}\Z")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Verdict(enum.Enum):
    MORE = "more"  # wait for more bytes
    COMPLETE = "complete"  # the whole request is buffered
    HAND_OVER = "hand over"  # not framed here: gunicorn's parser and Flask judge it


class RequestBuffer:
    """Collects one request's bytes and says when they are complete. No I/O.

    ``max_head`` is the largest head gunicorn's limits allow, ``max_body`` the
    largest body the app accepts; past either the request is handed over unread.
    """

    def __init__(self, max_head: int, max_body: int) -> None:
        self.data = bytearray()
        self._max_head = max_head
        self._max_body = max_body
        self._body_start: int | None = None
        self._length: int | None = None
        self._chunked = False
        self._scan = 0  # chunked: where the next chunk-size line starts
        self._trailers = False
        # (start, end) of an "Expect: 100-continue" line in ``data``
        self._expect: tuple[int, int] | None = None

    @property
    def expects_continue(self) -> bool:
        """The client waits for ``100 Continue`` before it sends the body."""
        return self._expect is not None

    def feed(self, chunk: bytes) -> Verdict:
        self.data += chunk
        if self._body_start is None:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                if b"\n\n" in self.data or len(self.data) > self._max_head:
                    return Verdict.HAND_OVER
                return Verdict.MORE
            self._body_start = end + 4
            verdict = self._read_head(end)
            if verdict is not None:
                return verdict
        return self._body_verdict()

    def without_expect(self) -> bytes:
        """The request without its Expect line, for when ``100 Continue`` was sent.

        gunicorn answers an Expect itself when the app reads the body; the client
        has its answer already and the body is here.
        """
        if self._expect is None:
            return bytes(self.data)
        start, end = self._expect
        return bytes(self.data[:start] + self.data[end:])

    def _read_head(self, end: int) -> Verdict | None:
        head = bytes(self.data[:end])
        lines = head.split(b"\r\n")
        lengths: set[bytes] = set()
        encodings: list[bytes] = []
        http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
        offset = len(lines[0]) + 2
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            field = name.strip().lower()
            if colon and field == b"content-length":
                lengths.add(value.strip())
            elif colon and field == b"transfer-encoding":
                encodings += [part.strip().lower() for part in value.split(b",")]
            elif (
                colon and field == b"expect" and http11 and value.strip().lower() == b"100-continue"
            ):
                self._expect = (offset, offset + len(line) + 2)
            offset += len(line) + 2
        if encodings:
            # Both framings at once, or a coding other than a final chunked: the
            # parser refuses these; not ours to guess.
            if lengths or encodings[-1] != b"chunked":
                return Verdict.HAND_OVER
            self._chunked = True
            self._scan = end + 4
            return None
        if len(lengths) > 1:
            return Verdict.HAND_OVER
        raw = next(iter(lengths), b"0")
        if not raw.isdigit() or int(raw) > self._max_body:
            return Verdict.HAND_OVER
        self._length = int(raw)
        return None

    def _body_verdict(self) -> Verdict:
        assert self._body_start is not None
        if not self._chunked:
            assert self._length is not None
            if len(self.data) - self._body_start >= self._length:
                return Verdict.COMPLETE
            return Verdict.MORE
        data = self.data
        while True:
            eol = data.find(b"\r\n", self._scan)
            if eol < 0:
                too_long = len(data) - self._scan > MAX_CHUNK_LINE
                return Verdict.HAND_OVER if too_long else Verdict.MORE
            if self._trailers:
                if eol == self._scan:
                    return Verdict.COMPLETE
                self._scan = eol + 2
                continue
            size_field = bytes(data[self._scan : eol]).split(b";", 1)[0].strip()
            if not _HEX.match(size_field):
                return Verdict.HAND_OVER
            size = int(size_field, 16)
            if size == 0:
                self._trailers = True
                self._scan = eol + 2
                continue
            end = eol + 2 + size + 2
            if end - self._body_start > self._max_body:
                return Verdict.HAND_OVER
            if end > len(data):
                return Verdict.MORE
            if data[end - 2 : end] != b"\r\n":
                return Verdict.HAND_OVER
            self._scan = end


class _DeadlineSocket:
    """The socket as gunicorn's parser sees it: every read ends at the deadline.

    Only reached when a request was handed over unframed; a framed one is read
    from the parser's buffer without touching the socket.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def recv(self, size: int) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(errno.ETIMEDOUT, "request not received in time")
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv(size)
        finally:
            # Responses are written to the same socket: blocking again.
            self._sock.settimeout(None)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)


class _Incoming:
    __slots__ = ("buffer", "conn", "continued", "deadline")

    def __init__(self, conn: Any, buffer: RequestBuffer, deadline: float) -> None:
        self.conn = conn
        self.buffer = buffer
        self.deadline = deadline
        self.continued = False


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {"error": f"request not received within {seconds:g} s (PF_INGEST_READ_TIMEOUT)"}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _ErrorPage:
    """The client socket, except that what gunicorn writes to it is kept.

    gunicorn answers what it refuses itself (a request line over 4094 bytes: 414,
    headers too large: 431, malformed framing: 400) with an HTML page; every other
    refusal of the API is JSON with an ``error``. Its status, reason and message are
    kept; only the body is rewritten (``_json_error``).
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0  # write_nonblock writes straight to sendall

    def sendall(self, data: bytes) -> None:
        self.written += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


_ERROR_PAGE = re.compile(rb"\AHTTP/1\.1 (\d{3}) ([^\r]*)\r\n.*?</h1>\s*(.*?)\s*</body>", re.DOTALL)


def _json_error(page: bytes) -> bytes:
    found = _ERROR_PAGE.match(page)
    if found is None:
        return page
    status, reason = found[1].decode(), found[2].decode("latin-1")
    message = html.unescape(found[3].decode("latin-1"))
    body = json.dumps({"error": f"{reason}: {message}" if message else reason}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class BufferingWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """See the module docstring. ``worker_class`` sets the two limits."""

    read_timeout: float = 10.0
    max_body_bytes: int = 10 * 1024 * 1024
    _quitting: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections still being read, in accept order (which is deadline order).
        self._reading: dict[Any, _Incoming] = {}
        # Answered connections waiting for the client to close: conn -> deadline.
        self._closing: dict[Any, float] = {}
        # Request threads at work: thread id -> when the request started.
        self._running: dict[int, float] = {}
        cfg = self.cfg
        self._max_head = (
            cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2)
        ) + 4

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        if cfg.is_ssl:
            raise RuntimeError("the ingest worker serves plain HTTP; terminate TLS in front")
        super().check_config(cfg, log)

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client, address, listener.getsockname())
        incoming = _Incoming(
            conn,
            RequestBuffer(self._max_head, self.max_body_bytes),
            time.monotonic() + self.read_timeout,
        )
        self._reading[conn] = incoming
        self.poller.register(client, selectors.EVENT_READ, partial(self._readable, incoming))

    def _readable(self, incoming: _Incoming, _fileobj: Any) -> None:
        sock = incoming.conn.sock
        try:
            chunk = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(incoming)
            return
        if not chunk:  # the client gave up before sending a whole request
            self._drop(incoming)
            return
        verdict = incoming.buffer.feed(chunk)
        if verdict is Verdict.MORE:
            if incoming.buffer.expects_continue and not incoming.continued:
                incoming.continued = True
                try:
                    sock.send(CONTINUE)
                except OSError:
                    self._drop(incoming)
            return
        self._hand_over(incoming)

    def _hand_over(self, incoming: _Incoming) -> None:
        conn = incoming.conn
        self.poller.unregister(conn.sock)
        del self._reading[conn]
        data = incoming.buffer.without_expect() if incoming.continued else incoming.buffer.data
        # At least a second for what is left, so that a request completed just
        # before its deadline is not refused on the way to the thread.
        deadline = max(incoming.deadline, time.monotonic() + 1.0)
        conn.parser = http.get_parser(self.cfg, _DeadlineSocket(conn.sock, deadline), conn.client)
        conn.parser.unreader.unread(bytes(data))
        conn.data_ready = True
        self.enqueue_req(conn)

    def _drop(self, incoming: _Incoming, answer: bytes = b"") -> None:
        conn = incoming.conn
        self._reading.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        if answer:
            with contextlib.suppress(OSError):  # best effort: it is going away anyway
                conn.sock.send(answer)
        self.nr_conns -= 1
        conn.close()

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Back on the event loop after a request: linger without blocking the loop."""
        if not fs.cancelled() and fs.exception() is None and fs.result() is False:
            self._linger(conn)
            return
        super().finish_request(conn, fs)

    def _linger(self, conn: Any) -> None:
        sock = conn.sock
        try:
            # FIN after the response; what the client still sends is read and
            # dropped, so that closing does not reset the connection (RFC 9112 9.6).
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._drain, conn))
        except (OSError, ValueError, KeyError):
            self._closed(conn)
            return
        self._closing[conn] = time.monotonic() + LINGER_SECONDS

    def _drain(self, conn: Any, _fileobj: Any) -> None:
        try:
            if conn.sock.recv(RECV_BYTES):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._closed(conn)

    def _closed(self, conn: Any) -> None:
        self._closing.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gunicorn's pass over waiting connections, plus requests read too slowly
        and answered connections whose client has not closed in time."""
        super().murder_pending()
        now = time.monotonic()
        while self._closing:
            conn, deadline = next(iter(self._closing.items()))
            if deadline > now:
                break
            self._closed(conn)
        while self._reading:
            incoming = next(iter(self._reading.values()))
            if incoming.deadline > now:
                break
            log.info(
                "slow client dropped",
                extra={
                    "client": str(incoming.conn.client),
                    "received_bytes": len(incoming.buffer.data),
                    "read_timeout": self.read_timeout,
                },
            )
            self._drop(incoming, _timeout_response(self.read_timeout))

    def handle(self, conn: Any) -> Any:
        key = threading.get_ident()
        self._running[key] = time.monotonic()
        try:
            return super().handle(conn)
        finally:
            self._running.pop(key, None)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's answer (status, log lines), with a JSON body (``_ErrorPage``)."""
        page = _ErrorPage(client)
        super().handle_error(req, page, addr, exc)
        if page.written:
            with contextlib.suppress(OSError):
                util.write_nonblock(client, _json_error(page.written))

    def handle_quit(self, sig: int, frame: Any) -> None:
        """Quit once; a quit signal that arrives while quitting is ignored.

        Ctrl-C signals the whole process group: a worker gets SIGINT from the
        terminal and SIGQUIT from the arbiter at nearly the same time. gthread's
        ``handle_quit`` entered again inside ``ThreadPoolExecutor.shutdown`` waits
        for the lock its first call holds: the worker never exited and kept the
        port after ``punchingfist run`` gave up on it.
        """
        if self._quitting:
            return
        self._quitting = True
        super().handle_quit(sig, frame)

    def notify(self) -> None:
        """Heartbeat, unless a request has run past gunicorn's timeout.

        Without a heartbeat the arbiter kills and replaces the worker, as it does
        with a sync worker stuck in a request; gthread's main loop would otherwise
        keep a worker with a stuck thread alive forever.
        """
        started = list(self._running.values())
        if started and time.monotonic() - min(started) > self.cfg.timeout:
            return
        super().notify()


def worker_class(read_timeout: float, max_body_bytes: int) -> type[BufferingWorker]:
    """The worker class with these limits, for gunicorn's ``worker_class`` setting."""
    return type(
        "IngestWorker",
        (BufferingWorker,),
        {"read_timeout": read_timeout, "max_body_bytes": max_body_bytes},
    )
