"""The fault suite under pytest: the fast subset (small scale, quick faults) by default.

``pytest -m faults tests/faults`` runs it; BACKLANE_FAULTS_ALL=1 adds the slow
scenarios (database and long broker outages, a deleted queue) and
BACKLANE_FAULTS_SCALE=full runs at the full scale (>= 2,000 orders). The whole
suite with its table and docs/faults.md is ``scripts/faults``.
"""

from __future__ import annotations

import os

import pytest

from tests.faults.harness import FAST, FULL, Infra
from tests.faults.scenarios import SCENARIOS, Entry, run_scenario

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200)]

SCALE = FULL if os.environ.get("BACKLANE_FAULTS_SCALE") == "full" else FAST
SELECTED = [e for e in SCENARIOS if e.fast or os.environ.get("BACKLANE_FAULTS_ALL") == "1"]


@pytest.mark.parametrize("entry", SELECTED, ids=[e.name for e in SELECTED])
def test_fault(entry: Entry, fault_infra: Infra) -> None:
    outcome = run_scenario(entry, fault_infra, SCALE)
    detail = "\n  ".join([*outcome.failures(), "notes:", *outcome.notes])
    assert outcome.ok, f"{outcome.fault} ({SCALE.name} scale, {outcome.items} items):\n  {detail}"
