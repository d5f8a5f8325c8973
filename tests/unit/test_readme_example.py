"""The README's "Adding a pipeline" example is the brand-new pipeline that
tests/integration/test_new_pipeline.py runs end to end: every line of it is in that test."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Adding a pipeline", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the section shows one example"
    return [line.strip() for line in blocks[0].splitlines() if line.strip()]


def test_every_line_of_the_readme_example_is_in_the_new_pipeline_test() -> None:
    test_lines = {line.strip() for line in (REPO / "tests/integration/test_new_pipeline.py").read_text().splitlines()}
    missing = [line for line in readme_example() if line not in test_lines]
    assert not missing, f"README lines not in test_new_pipeline.py: {missing}"
