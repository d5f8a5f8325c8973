"""The documentation's pages and their fenced code blocks, for the tests that run or check them.

A test takes the block it covers with :func:`block` (page, language and texts only that block
contains, all literal), so ``tests/unit/test_docs_examples.py`` can find, by reading the tests'
source, which test covers which block, and fail on a block no test covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

#: An opening fence and its language, then the body up to the closing fence.
_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One fenced code block: the page it is on (relative to the repository), its language, its text."""

    page: str
    language: str
    body: str
    line: int

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ```{self.language}"


def pages() -> list[str]:
    """Every page: the README and each markdown file of the docs site."""
    return ["README.md", *sorted(str(path.relative_to(REPO)) for path in DOCS.rglob("*.md"))]


def text(page: str) -> str:
    return (REPO / page).read_text()


def blocks(page: str | None = None) -> list[Block]:
    """The fenced code blocks of ``page`` (every page's when None), in order."""
    found = []
    for name in [page] if page else pages():
        source = text(name)
        for match in _FENCE.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            found.append(Block(name, match.group(1), match.group(2), line))
    return found


def matching(page: str, language: str, *texts: str) -> list[Block]:
    return [b for b in blocks(page) if b.language == language and all(t in b.body for t in texts)]


def block(page: str, language: str, *texts: str) -> str:
    """The body of the one ```language block of ``page`` that contains every one of ``texts``."""
    found = matching(page, language, *texts)
    assert len(found) == 1, f"expected one ```{language} block with {texts} in {page}, found {len(found)}"
    return found[0].body


def section(page: str, heading: str) -> str:
    """The text of ``page`` from the heading line ``heading`` to the next heading of its level."""
    source = text(page)
    level = heading.split(" ", 1)[0]
    assert f"\n{heading}\n" in f"\n{source}", f"{page} has no heading {heading!r}"
    after = f"\n{source}".split(f"\n{heading}\n", 1)[1]
    return re.split(rf"^{level} ", after, maxsplit=1, flags=re.MULTILINE)[0]


def commands(body: str) -> list[str]:
    """A shell block's commands: a command starts at column 0, its continuation lines are indented."""
    result: list[str] = []
    for line in body.splitlines():
        if line and not line[0].isspace():
            result.append(line)
        elif result:
            result[-1] += "\n" + line
    return result
