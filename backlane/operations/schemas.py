"""JSON Schemas of the message contracts, for services in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts import MESSAGE_CONTRACTS


def schema_of(name: str) -> dict[str, Any]:
    return MESSAGE_CONTRACTS[name].model_json_schema()


def render(name: str) -> str:
    return json.dumps(schema_of(name), indent=2, sort_keys=True) + "\n"


def write_schemas(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in MESSAGE_CONTRACTS:
        path = out / f"{name}.schema.json"
        path.write_text(render(name))
        paths.append(path)
    return paths
