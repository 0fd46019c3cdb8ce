"""Flower sees the tasks: every Celery app sends task events on a broker that carries them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import queueing
from shared.settings import Settings


@pytest.mark.parametrize("make", [queueing.make_celery, queueing.make_worker_celery])
def test_redis_apps_send_task_events_and_sent_events(
    make_settings: Callable[..., Settings], make: Callable[..., Any]
) -> None:
    app = make(make_settings(PF_BROKER_URL="redis://127.0.0.1:6379/0"), name="t")
    assert app.conf.worker_send_task_events is True
    assert app.conf.task_send_sent_event is True


def test_the_embedded_broker_sends_none(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # kombu's SQLAlchemy transport has no fanout: events would pile up in its
    # dead-letter queue, read by nobody.
    settings = make_settings(PF_BROKER_URL=f"sqla+sqlite:///{tmp_path}/broker.db")
    app = queueing.make_worker_celery(settings, name="t")
    assert app.conf.worker_send_task_events is False
    assert app.conf.task_send_sent_event is False


def test_worker_nodes_are_named_by_queue_and_host() -> None:
    assert queueing.node_name(queueing.ENGINE_QUEUE, "pod-1") == "engine@pod-1"
    assert queueing.node_name(queueing.NOTIFIER_QUEUE, "pod-2") == "notifier@pod-2"
