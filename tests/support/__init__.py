"""Helpers the test suites share: waiting for a condition, the Kubernetes API double,
punchingfist processes (``workers``), scraping /metrics.

Import as ``tests.support.<module>``; none of it is a fixture, so conftest files and
test modules can use it alike.
"""
