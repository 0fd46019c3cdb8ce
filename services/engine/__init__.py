"""The workflow engine: Celery workers that run each Workflow step as a chained task.

``core/`` decides (pure functions), ``steps/`` executes (one executor per step
type) with ``runners/`` (where commands run), ``store/`` persists, ``tasks.py`` adapts
Celery to them over the per-process ``runtime.py``, and ``app.py`` wires a worker.
See docs/engine.md.
"""
