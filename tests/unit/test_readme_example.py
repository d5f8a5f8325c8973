"""The "Adding a pipeline" example (docs/adding-a-pipeline.md) is the brand-new pipeline that
tests/integration/test_new_pipeline.py runs end to end: every line of it is in that test."""

from __future__ import annotations

from pathlib import Path

from tests import docs

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> list[str]:
    assert len(docs.matching("docs/adding-a-pipeline.md", "python")) == 1, "the page shows one example"
    example = docs.block("docs/adding-a-pipeline.md", "python", "class GreeterSettings(TableSettings):")
    return [line.strip() for line in example.splitlines() if line.strip()]


def test_every_line_of_the_readme_example_is_in_the_new_pipeline_test() -> None:
    test_lines = {line.strip() for line in (REPO / "tests/integration/test_new_pipeline.py").read_text().splitlines()}
    missing = [line for line in readme_example() if line not in test_lines]
    assert not missing, f"docs/adding-a-pipeline.md lines not in test_new_pipeline.py: {missing}"
