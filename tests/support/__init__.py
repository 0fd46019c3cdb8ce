"""Doubles and servers the tests share (on loopback only)."""
