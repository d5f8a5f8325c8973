"""docs/adding-a-pipeline.md, held to what it says: its files, and only those, make a new
pipeline. They are written into a copy of actors/ (nothing of the repository is edited),
then an operator's commands run on the real broker and PostgreSQL: ``backlane migrate``
creates the table from the folder's own migration, a ``dramatiq actors scheduler`` worker
takes the pipeline up, ``backlane trigger`` discovers the rows, and ``backlane status``
counts them done."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from tests import docs
from tests.acceptance.conftest import stack_env
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
PAGE = "docs/adding-a-pipeline.md"
#: A file of the walkthrough: its path on a line of its own, in backticks, then its code block.
FILE_BLOCK = re.compile(r"^`(?P<path>actors/[^`]+\.py)`:\n\n```python\n(?P<code>.*?)^```$", re.M | re.S)


def walkthrough_files() -> dict[str, str]:
    """The page's files, each the block under its path (and only those: a block the page adds
    without a path, or a path without its block, fails here)."""
    files = {
        "actors/greetings/models.py": docs.block(PAGE, "python", "class Greeting(Base):"),
        "actors/greetings/migrations/greetings_0001_table.py": docs.block(
            PAGE, "python", 'revision = "greetings_0001"'
        ),
        "actors/greetings/__init__.py": docs.block(PAGE, "python", "GREETINGS = register("),
    }
    named = {match["path"]: match["code"] for match in FILE_BLOCK.finditer(docs.text(PAGE))}
    assert named == files, "each python block of the page is one of its files, under the file's path"
    return files


def test_the_walkthrough_is_one_new_folder() -> None:
    files = walkthrough_files()
    folders = {path.split("/")[1] for path in files}
    assert len(folders) == 1, folders
    (folder,) = folders
    assert not (REPO / "actors" / folder).exists(), "the example must be new, not one of the pipelines"
    assert f"actors/{folder}/__init__.py" in files and any("/migrations/" in path for path in files)


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_walkthrough_runs_on_rabbitmq_and_postgresql(rabbitmq: Any, database_url: str, tmp_path: Path) -> None:
    tree = tmp_path / "app"
    shutil.copytree(REPO / "actors", tree / "actors", ignore=shutil.ignore_patterns("__pycache__"))
    for path, code in walkthrough_files().items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(code)
    env = {
        **os.environ,
        **stack_env(rabbitmq, database_url),
        # The copy of actors/ comes first, the repository (backlane, scheduler, contracts) after it.
        "PYTHONPATH": os.pathsep.join([str(tree), str(REPO)]),
        "PYTHONUNBUFFERED": "1",
    }

    migrated = _run(env, tree, "-m", "backlane.cli", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    engine = sqlalchemy.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as connection:
            heads = set(connection.scalars(sqlalchemy.text("SELECT version_num FROM alembic_version")))
            assert "greetings_0001" in heads, heads
            connection.execute(sqlalchemy.text("INSERT INTO greetings (name) VALUES ('Ada'), ('Grace')"))
        assert _run(env, tree, "-m", "backlane.cli", "declare-queues").returncode == 0

        log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "actors", "scheduler", "--processes", "1", "--threads", "2"],
            env=env,
            cwd=tree,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            triggered = _run(env, tree, "-m", "backlane.cli", "trigger", "greetings")
            assert triggered.returncode == 0, triggered.stderr

            def greeted() -> list[str]:
                with engine.connect() as connection:
                    query = "SELECT greeting FROM greetings WHERE greeting IS NOT NULL ORDER BY id"
                    return list(connection.scalars(sqlalchemy.text(query)))

            try:
                wait_until(lambda: len(greeted()) == 2, timeout=90, what="both names greeted")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nworker log:\n{(tmp_path / 'worker.log').read_text()[-3000:]}") from None
            assert greeted() == ["Hello, Ada!", "Hello, Grace!"]
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            log.close()

        # What the page's "Run it" says, word for word, is what this test ran (psql: its INSERT).
        run_it = docs.commands(docs.block(PAGE, "sh", "backlane trigger greetings"))
        assert run_it[0] == "backlane migrate" and run_it[1] == "dramatiq actors scheduler &"
        assert "INSERT INTO greetings (name) VALUES ('Ada'), ('Grace')" in run_it[2]
        assert run_it[3:] == ["backlane trigger greetings", "backlane status"]
        status = _run(env, tree, "-m", "backlane.cli", "status", "--json")
        pipelines = {row["name"]: row for row in json.loads(status.stdout)["pipelines"]}
        assert pipelines["greetings"]["items"]["done"] == 2, pipelines["greetings"]
        assert pipelines["greetings"]["items"]["due"] == 0
    finally:
        engine.dispose()
