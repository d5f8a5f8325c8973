"""The soak's commands in docs/soak.md are ones its parser takes, with the values they say."""

from __future__ import annotations

from tests import docs
from tests.faults.soak import build_parser


def test_the_soak_commands_of_the_docs_parse_as_they_say() -> None:
    block = docs.block("docs/soak.md", "sh", "tests.faults.soak --minutes 5 --seed 42")
    parsed = []
    for line in block.splitlines():
        argv = line.split("#", 1)[0].split()
        assert argv[:3] == [".venv/bin/python", "-m", "tests.faults.soak"], line
        parsed.append(build_parser().parse_args(argv[3:]))
    assert [(a.minutes, a.seed) for a in parsed] == [(60.0, None), (5.0, 42)]
