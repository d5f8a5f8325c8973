"""The previous release as a tree of its own: what the rolling-upgrade test runs as version N-1.

:data:`UPGRADE_FROM` names its commit; :func:`extract` writes that commit's files into a
directory with ``git archive`` (the work tree and the repository are left as they are). Its
processes run with this checkout's interpreter and dependencies, the tree first on their path
and as their working directory (:meth:`devtools.stack.Stack.start_worker`'s ``source``).

A clone without that commit (a shallow CI checkout) is an error naming the fix, never a skip:
a rolling-upgrade test that quietly does not run proves nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from devtools.stack import SOURCE_ROOT

#: The file naming the commit of the previous release (one line; '#' lines are comments).
UPGRADE_FROM = Path(__file__).with_name("upgrade_from")


class MissingHistory(RuntimeError):
    """The previous release's commit is not in this clone; the message says how to get it."""


def previous_release(path: Path = UPGRADE_FROM) -> str:
    """The commit :data:`UPGRADE_FROM` names."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    commits = [line for line in lines if line and not line.startswith("#")]
    if len(commits) != 1:
        raise ValueError(f"{path} must name exactly one commit, not {commits}")
    return commits[0]


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, timeout=60, check=False)


def check_history(commit: str) -> None:
    """Raise :class:`MissingHistory` when ``commit`` is not in this clone."""
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0:
        return
    shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == b"true"
    where = "this clone is shallow" if shallow else "it is not in this clone"
    raise MissingHistory(
        f"the rolling-upgrade test runs the previous release, commit {commit} ({UPGRADE_FROM.name}), "
        f"and {where}. Fix: `git fetch --unshallow` (or `git fetch origin {commit}`); in CI, check out "
        "the whole history (e.g. actions/checkout with fetch-depth: 0)"
    )


def extract(commit: str, dest: Path) -> Path:
    """``commit``'s files under ``dest`` (created): ``git archive <commit> | tar -x -C dest``."""
    check_history(commit)
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(SOURCE_ROOT), "archive", "--format=tar", commit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert archive.stdout is not None
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True, check=False)
    archive.stdout.close()
    errors = archive.stderr.read() if archive.stderr is not None else b""
    if archive.wait(60) != 0 or untar.returncode != 0:
        detail = (errors or untar.stderr).decode(errors="replace").strip()
        raise MissingHistory(f"git archive {commit} | tar -x -C {dest} failed: {detail}")
    return dest
