"""The engine's pure logic: run contexts, limits, schedules and step outcomes.

The Workflow model, the run phases and the template sandbox are shared with the
other deployables and live in ``shared.domain``.

Nothing in this package does I/O or imports celery, sqlalchemy, kubernetes or an
HTTP client: the task adapters load rows, call these functions with plain values and
persist what they return. That keeps every decision testable without a worker.
"""
