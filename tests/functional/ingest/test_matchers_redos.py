"""A Source matcher cannot be turned into a denial of service by an alert label.

Before: matchers were Python regexes (backtracking); ``([a-z0-9]+\\.?)+:9100``
against 34 letters and a ``!`` held both gunicorn workers until their timeout (a
500), and a legitimate webhook waited 59 s. RE2 answers in linear time.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from tests.functional.ingest.bad_webhooks import alert, group
from tests.functional.ingest.conftest import source_spec
from tests.functional.ingest.gunicorn import running_ingest

MATCHER = r'instance=~"([a-z0-9]+\.?)+:9100"'


@pytest.mark.redis
def test_backtracking_pattern_answers_at_once_through_gunicorn(
    sqlite_url: str, tmp_path: Path, redis_url: str
) -> None:
    sources = {"alertmanager": source_spec(matchers=[MATCHER])}
    evil = [alert("redos", n, labels={"instance": "a" * 34 + "!"}) for n in range(2)]
    good = alert("redos-good", labels={"instance": "node1.example:9100"})
    # Both workers busy with an evil group, and a good webhook behind them.
    with (
        running_ingest(sqlite_url, tmp_path, redis_url, sources) as ingest,
        concurrent.futures.ThreadPoolExecutor(3) as pool,
    ):
        attacks = [pool.submit(ingest.post, group(a)) for a in evil]
        legit = pool.submit(ingest.post, group(good))
        answers = [f.result() for f in attacks]
        normal = legit.result()
    assert [(a.status, a.body["filtered"]) for a in answers] == [(200, 1), (200, 1)]
    assert (normal.status, normal.body["new"]) == (200, 1)
    assert max(a.seconds for a in [*answers, normal]) < 5.0
