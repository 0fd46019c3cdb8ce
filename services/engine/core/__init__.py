"""The engine's pure logic: workflow parsing, templates, conditions, step outcomes.

Nothing in this package does I/O or imports celery, sqlalchemy, kubernetes or an
HTTP client: the task adapters load rows, call these functions with plain values and
persist what they return. That keeps every decision testable without a worker.
"""
