"""RequestBuffer: when the ingest worker has a whole request and may hand it to a thread."""

from __future__ import annotations

import pytest

from services.ingest.workers import RequestBuffer, Verdict

HEAD = b"POST /webhook/am HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def feed_bytewise(buffer: RequestBuffer, data: bytes) -> list[Verdict]:
    return [buffer.feed(data[i : i + 1]) for i in range(len(data))]


def test_a_head_without_a_body_is_complete_at_its_blank_line() -> None:
    buffer = RequestBuffer(max_head=8192, max_body=100)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    verdicts = feed_bytewise(buffer, request)
    assert verdicts[:-1] == [Verdict.MORE] * (len(request) - 1)
    assert verdicts[-1] is Verdict.COMPLETE
    assert bytes(buffer.data) == request


def test_a_content_length_body_is_waited_for() -> None:
    buffer = RequestBuffer(max_head=8192, max_body=100)
    assert buffer.feed(HEAD + b"Content-Length: 4\r\n\r\nab") is Verdict.MORE
    assert buffer.feed(b"c") is Verdict.MORE
    assert buffer.feed(b"d") is Verdict.COMPLETE


@pytest.mark.parametrize(
    "head",
    [
        HEAD + b"Content-Length: 101\r\n\r\n",  # over the body limit: Flask answers 413
        HEAD + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\n",
        HEAD + b"Content-Length: -1\r\n\r\n",
        HEAD + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        HEAD + b"Transfer-Encoding: gzip\r\n\r\n",
        b"POST /x HTTP/1.1\nHost: x\n\n",  # bare LF: gunicorn's parser decides
    ],
)
def test_what_is_not_framed_here_is_handed_over_at_once(head: bytes) -> None:
    assert RequestBuffer(max_head=8192, max_body=100).feed(head) is Verdict.HAND_OVER


def test_a_head_over_gunicorns_limits_is_handed_over_unfinished() -> None:
    buffer = RequestBuffer(max_head=100, max_body=100)
    assert buffer.feed(HEAD) is Verdict.MORE
    assert buffer.feed(b"X-Long: " + b"a" * 40) is Verdict.HAND_OVER


def test_a_chunked_body_is_complete_after_its_last_chunk_and_trailers() -> None:
    body = b"4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: y\r\n\r\n"
    buffer = RequestBuffer(max_head=8192, max_body=100)
    verdicts = feed_bytewise(buffer, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert verdicts[-1] is Verdict.COMPLETE
    assert set(verdicts[:-1]) == {Verdict.MORE}


def test_a_chunked_body_without_trailers() -> None:
    buffer = RequestBuffer(max_head=8192, max_body=100)
    assert buffer.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n") is Verdict.MORE
    assert buffer.feed(b"0\r\n") is Verdict.MORE
    assert buffer.feed(b"\r\n") is Verdict.COMPLETE


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nab\r\n", b"2\r\nabc\r\n", b"ff\r\n" + b"a" * 255 + b"\r\n", b"1" * 2000],
    ids=["not-hex", "wrong-size", "over-limit", "endless-size-line"],
)
def test_bad_or_oversized_chunks_are_handed_over(body: bytes) -> None:
    buffer = RequestBuffer(max_head=8192, max_body=100)
    assert buffer.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body) is Verdict.HAND_OVER


def test_expect_continue_is_answered_here_and_not_passed_on() -> None:
    buffer = RequestBuffer(max_head=8192, max_body=100)
    head = HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    assert buffer.feed(head) is Verdict.MORE
    assert buffer.expects_continue
    assert buffer.feed(b"{}") is Verdict.COMPLETE
    assert buffer.without_expect() == HEAD + b"Content-Length: 2\r\n\r\n{}"


def test_expect_is_ignored_from_http_1_0() -> None:
    buffer = RequestBuffer(max_head=8192, max_body=100)
    buffer.feed(b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert not buffer.expects_continue
