"""The deployables. Each is a thin adapter (Flask, Celery, Kubernetes) over ``shared``.

Services never import each other; only ``services.cli`` composes them.
"""
