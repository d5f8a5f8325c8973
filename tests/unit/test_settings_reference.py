"""The generated settings reference (devtools/settings_reference.py) lists every setting there is.

The generator and an independent walk of the same classes run in child processes (loading the
application registers its pipelines, which no unit test does in its own process), with
``BACKLANE_*`` values set that the reference must not show: it documents the classes' defaults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

#: What the environment says, which the reference must not show as defaults.
ENVIRONMENT = {"BACKLANE_ORDERS__MAX_ITEMS": "7", "BACKLANE_BROKER__PREFETCH": "9", "BACKLANE_APP": "scheduler"}

#: Every leaf setting, walked without the generator: (variable, is it a secret).
INDEPENDENT_WALK = """
import json, typing
from pydantic import BaseModel, SecretStr
from backlane.app import load_app
from backlane.core.config import with_defaults
from backlane.settings import Settings

def walk(model, instance, prefix):
    for name, info in model.model_fields.items():
        here, value, kind = f"{prefix}{name.upper()}", getattr(instance, name, None), info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from walk(kind, value, here + "__")
        elif typing.get_origin(kind) is dict and isinstance(value, dict):
            for key, entry in value.items():
                yield from walk(typing.get_args(kind)[1], entry, f"{here}__{key.upper()}__")
        else:
            yield here, kind is SecretStr or SecretStr in typing.get_args(kind)

found = list(walk(Settings, Settings.model_construct(), "BACKLANE_"))
pipelines = {}
for registered in load_app().registry:
    model = with_defaults(registered.pipeline.config, registered.pipeline.defaults)
    pipelines[registered.name] = list(walk(model, model(), f"BACKLANE_{registered.name.upper()}__"))
print(json.dumps({"global": found, "pipelines": pipelines}))
"""


def run(*args: str) -> str:
    env = {**os.environ, **ENVIRONMENT, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    return json.loads(run("-m", "devtools.settings_reference", "--json"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rows(reference: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["variable"]: row for table in reference for row in table["rows"] if "<" not in row["variable"]}


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads(run("-c", INDEPENDENT_WALK))  # type: ignore[no-any-return]


def test_every_setting_and_every_pipelines_setting_is_listed_once(
    reference: list[dict[str, Any]], rows: dict[str, dict[str, Any]], expected: dict[str, Any]
) -> None:
    every = [name for name, _ in expected["global"]] + [
        n for fields in expected["pipelines"].values() for n, _ in fields
    ]
    listed = [row["variable"] for table in reference for row in table["rows"] if "<" not in row["variable"]]
    assert sorted(listed) == sorted(every), set(every) ^ set(listed)
    assert len(listed) == len(set(listed)), "a setting listed twice"
    assert {"orders", "catalog", "tracks", "exports", "staging_acme", "staging_globex"} <= set(expected["pipelines"])
    titles = " ".join(table["title"] for table in reference)
    assert all(f"BACKLANE_{name.upper()}__*" in titles for name in expected["pipelines"]), titles


def test_a_secret_shows_no_default(rows: dict[str, dict[str, Any]], expected: dict[str, Any]) -> None:
    secrets = {name for name, secret in expected["global"] if secret}
    assert {"BACKLANE_BROKER__URL", "BACKLANE_DATABASE__URL", "BACKLANE_DASHBOARD__PASSWORD"} <= secrets
    for name in secrets:
        assert rows[name]["secret"] and rows[name]["default"] in ("secret, not shown", "unset"), rows[name]
    markdown = run("-m", "devtools.settings_reference")
    assert "guest:guest@" not in markdown and "sqlite:///backlane.db" not in markdown


def test_defaults_are_the_classes_and_the_registrations_not_the_environment(rows: dict[str, dict[str, Any]]) -> None:
    assert rows["BACKLANE_ORDERS__MAX_ITEMS"]["default"] == "`500`"
    assert rows["BACKLANE_BROKER__PREFETCH"]["default"] == "`0`"
    assert rows["BACKLANE_STAGING_ACME__MAX_ITEMS"]["default"] == "`5`"
    assert rows["BACKLANE_STAGING_GLOBEX__MAX_ITEMS"]["default"] == "`10`"
    assert rows["BACKLANE_CATALOG__SECTIONS__SALES__RETENTION_DAYS"]["default"] == "`365.0`"
    assert rows["BACKLANE_BROKER__QUEUE_TYPE"]["type"] == "`classic` or `quorum`"
    assert rows["BACKLANE_BROKER__PREFETCH"]["type"] == "int (≥ 0, ≤ 65,535)"


def test_the_comment_above_a_field_is_its_doc_and_an_override_has_its_own(rows: dict[str, dict[str, Any]]) -> None:
    assert rows["BACKLANE_BROKER__PREFETCH"]["doc"].startswith("Messages a worker process holds per queue")
    assert rows["BACKLANE_ORDERS__TICK"]["doc"] == "Every minute, as the order-queue service did."
    assert rows["BACKLANE_TRACKS__TICK"]["doc"] != rows["BACKLANE_ORDERS__TICK"]["doc"]
    assert rows["BACKLANE_STAGING_ACME__BASE_URL"]["doc"].startswith("Base URL of the vendor's scraper API")
    documented = sum(1 for row in rows.values() if row["doc"])
    assert documented / len(rows) > 0.9, "most fields carry a #: comment"
