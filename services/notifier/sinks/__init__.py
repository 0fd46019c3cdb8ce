"""Sink implementations; importing this package registers them in the default registry."""

from services.notifier.sinks import alertmanager, slack, stdout, webhook

__all__ = ["alertmanager", "slack", "stdout", "webhook"]
