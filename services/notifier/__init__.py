"""Notifier deployable: Celery workers on the ``notifier`` queue that deliver run results to Sinks.

Arrives with the sinks issue; the queue, task name (``notifier.deliver``) and the
``sink_deliveries`` table are already part of the store.
"""
