"""MkDocs hooks of the docs site (``hooks:`` in mkdocs.yml): the generated settings reference.

``docs/settings.md`` holds the marker ``<!-- settings-reference -->``; at every build it is
replaced by :mod:`devtools.settings_reference`'s tables, run in a child process so the build
neither registers backlane's pipelines in MkDocs' own process nor reads its ``BACKLANE_*``
environment (the reference shows the classes' defaults). A failure fails the build, with the
generator's error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = "<!-- settings-reference -->"
ROOT = Path(__file__).resolve().parents[1]


def generated_reference() -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKLANE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as scratch:  # nothing the import might write lands in the repo
        result = subprocess.run(
            [sys.executable, "-m", "devtools.settings_reference"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    if result.returncode != 0:
        raise PluginError(f"the settings reference could not be generated:\n{result.stderr}")
    return result.stdout


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "settings.md":
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/settings.md lost its {MARKER} marker: the generated reference goes there")
    return markdown.replace(MARKER, generated_reference())
