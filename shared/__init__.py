"""Punching Fist's common package: settings, store, domain logic and queueing.

Every deployable in ``services/`` is a thin adapter over this package. Nothing here
imports a service.
"""
