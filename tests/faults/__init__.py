"""Fault-injection suite: the real system under one fault at a time (see harness.py, scenarios.py).

``scripts/faults`` (``python -m tests.faults``) runs every scenario at full scale
and writes docs/faults.md; ``pytest -m faults`` runs the fast subset at small scale.
"""
