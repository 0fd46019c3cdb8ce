"""The notifier's pure logic: what a message says and what to record after an attempt.

No I/O and no framework imports here (an import-linter contract keeps it so).
"""
