"""Ingest deployable: the Flask API that receives AlertManager webhooks (served by gunicorn)."""
