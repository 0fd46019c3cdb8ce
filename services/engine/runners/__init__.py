"""Runners: where a step's command runs (a subprocess, a Kubernetes Job).

``bases`` holds the contract (``Command`` in, ``Completed`` out, ``Runner``); ``local``
and ``kubernetes`` implement it, ``kube`` is the Job runner's thin API client. Step
types (``services.engine.steps``) pick a runner by the name a step gives; runners
know nothing of steps, Workflows or the store (an import-linter contract keeps it so).

This package imports none of its runners: ``kubernetes`` pulls in the kubernetes
client (about a third of the worker's import time), which the runtime imports only
when a cluster may be configured.
"""
