"""Pure domain logic: functions over plain values. No I/O, no globals, no frameworks.

Nothing under this package imports flask, celery, kubernetes, sqlalchemy or httpx.
"""
