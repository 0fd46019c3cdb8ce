"""Notifier deployable: Celery workers on the ``notifier`` queue that deliver run results to Sinks.

``app.py`` wires the Celery app and the per-process runtime, ``tasks.py`` holds the
adapters (``notifier.deliver``, ``notifier.alert_resolved``,
``notifier.approval_decided``), ``store.py`` the claims and records in
``sink_deliveries`` and ``alert_sink_states``, ``approvals.py`` what messages show of
approvals, ``core/`` the pure decisions and ``sinks/`` one implementation per Sink
type in one registry.
"""
