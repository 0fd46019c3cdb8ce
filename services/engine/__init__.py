"""The workflow engine: Celery workers that run each Workflow step as a chained task.

``core/`` decides (pure functions), ``steps/`` executes (one executor per step
type), ``store.py`` persists, ``tasks.py`` adapts Celery to them and ``app.py`` wires
a worker. See docs/engine.md.
"""
