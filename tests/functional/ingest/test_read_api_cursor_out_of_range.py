"""A cursor whose timestamp has no UTC time is a 400, like any cursor not ours.

``/api/v1/alerts?cursor=`` with ``0001-01-01T00:00:00+05:00`` or
``9999-12-31T23:59:59-01:00`` (a valid ISO timestamp, outside the range of UTC
datetimes) was a 422 "the database refused this request's data (OverflowError)":
the conversion to UTC failed when the value was bound to the query.
"""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient


def _cursor(stamp: str) -> str:
    raw = f"{stamp}|00000000-0000-0000-0000-000000000000".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-01:00"])
def test_a_cursor_out_of_the_utc_range_is_a_400(client: FlaskClient, stamp: str) -> None:
    answer = client.get(f"/api/v1/alerts?cursor={_cursor(stamp)}")
    assert answer.status_code == 400, answer.json
    assert "cursor is not one this API returned" in answer.json["error"]


def test_a_cursor_at_the_edge_of_the_range_still_pages(client: FlaskClient) -> None:
    answer = client.get(f"/api/v1/alerts?cursor={_cursor('0001-01-01T00:00:00+00:00')}")
    assert answer.status_code == 200, answer.json
    assert answer.json == {"items": [], "next": None}
