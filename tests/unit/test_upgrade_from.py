"""devtools/upgrade_from names the release the rolling-upgrade test runs as N-1: a commit of this
history, older than this checkout's newest migration (so the test crosses a schema change)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.stack import SOURCE_ROOT
from devtools.upgrade import MissingHistory, check_history, previous_release


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=60)


def _migrations_here() -> set[str]:
    folders = [SOURCE_ROOT / "migrations" / "versions", *SOURCE_ROOT.glob("actors/*/migrations")]
    return {str(p.relative_to(SOURCE_ROOT)) for folder in folders for p in folder.rglob("*.py") if p.stem[:4].isdigit()}


def test_the_previous_release_is_an_ancestor_without_the_newest_migration() -> None:
    commit = previous_release()
    check_history(commit)  # a shallow clone fails here, with the fix
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, f"{commit} is not an ancestor of HEAD"
    listed = _git("ls-tree", "-r", "--name-only", commit, "--", "migrations", "actors").stdout.split()
    missing = _migrations_here() - set(listed)
    assert missing, f"{commit} already has every migration of this checkout: the test would cross no schema change"


def test_a_commit_missing_from_the_clone_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingHistory, match="git fetch --unshallow"):
        check_history("0" * 40)
    (tmp_path / "upgrade_from").write_text("# a comment\n\n" + "a" * 40 + "\n")
    assert previous_release(tmp_path / "upgrade_from") == "a" * 40
