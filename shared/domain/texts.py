"""Text that a database can store: the one rule for NUL and lone surrogates.

PostgreSQL refuses a NUL character in any text or JSONB value (psycopg2 raises
before the query is sent), and a lone UTF-16 surrogate (``"\\ud800"`` in JSON) is not
Unicode, so no driver can encode it. A value from a request that holds either is
refused at the boundary with a 4xx naming the field; reaching the database it
was a 500 (``POST /api/v1/approvals/<id>`` with ``"by": "a\\u0000"``).

What this module must not do: store, escape or cut anything (``webhooks.storable``
keeps a webhook body as its record); it only says what is wrong.
"""

from __future__ import annotations

import re

NUL = "\x00"
SURROGATE = re.compile("[\ud800-\udfff]")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    if NUL in text:
        return "contains a NUL character"
    if SURROGATE.search(text):
        return "contains a lone UTF-16 surrogate (not Unicode)"
    return None
