"""The core tables as the engine's store modules write them, and their bind helper.

The engine writes with compare-and-set UPDATEs on these tables, not with ORM
objects: every write that moves a run forward must say which state it expects to
find. This module only names the tables; it must not build statements that belong
to one seam (start, step, finish, recovery).
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from shared.db.models import Alert, Approval, Resource, SinkDelivery, StepRun, WorkflowRun

RUNS = cast(sa.Table, WorkflowRun.__table__)
STEPS = cast(sa.Table, StepRun.__table__)
ALERTS = cast(sa.Table, Alert.__table__)
DELIVERIES = cast(sa.Table, SinkDelivery.__table__)
RESOURCES = cast(sa.Table, Resource.__table__)
APPROVALS = cast(sa.Table, Approval.__table__)


def bind(column: sa.Column[Any]) -> sa.BindParameter[Any]:
    """A bind parameter named ``b_<column>`` typed like the column."""
    return sa.bindparam(f"b_{column.name}", type_=column.type)
