"""Pure domain logic: functions over plain values. No I/O, no globals, no frameworks.

The model every deployable shares: alerts and their lifecycle (``alerts``), Sources
(``sources``, ``matchers``), Workflows as the engine runs them (``workflows``), run
and step phases and how a run begins (``runs``), the template sandbox
(``templates``) and what a template refers to (``references``).

Nothing under this package imports flask, celery, kubernetes, sqlalchemy or httpx,
nor the parts of ``shared`` that do I/O (an import-linter contract checks it).
"""
