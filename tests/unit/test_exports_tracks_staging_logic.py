"""Pure logic of the tracks, exports and staging pipelines: defaults, encoding, health, backoff."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from actors.exports.client import health_is_up
from actors.exports.files import COLUMNS, encode_products, export_paths
from backlane.core.processing import RetryPolicy
from backlane.errors import PermanentError
from contracts.products import Product


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BACKLANE_"):
            monkeypatch.delenv(key)


def products(start: int, count: int) -> list[Product]:
    return [
        Product(
            id=i,
            sku=f"SKU-{i}",
            name=f'P {i}, "q" é' if i % 2 else f"P {i}",
            category="c",
            price=Decimal("1.50"),
            stock=i,
        )
        for i in range(start, start + count)
    ]


def test_export_backoff_starts_at_30_s_doubles_and_stops_at_300_s(clean_env: None) -> None:
    # The exports section's defaults (checked in tests/integration/test_pipeline_sections.py).
    policy = RetryPolicy(2, 30_000, 300_000)
    for failures, low in [(0, 30_000), (1, 60_000), (2, 120_000)]:
        delays = [policy.backoff_ms(failures) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= min(2 * low, 300_000)
    assert max(policy.backoff_ms(6) for _ in range(200)) <= 300_000


@pytest.mark.parametrize(
    ("status", "up"), [(200, True), (204, True), (401, True), (403, False), (404, False), (500, False), (503, False)]
)
def test_health_is_2xx_or_401(status: int, up: bool) -> None:
    assert health_is_up(status) is up


def test_csv_pages_concatenate_to_one_valid_file_with_one_header() -> None:
    data = encode_products("csv", products(1, 3), first_page=True) + encode_products(
        "csv", products(4, 2), first_page=False
    )
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == list(COLUMNS) == ["id", "sku", "name", "category", "price", "stock"]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4", "5"]
    assert rows[1][2] == 'P 1, "q" é' and rows[1][4] == "1.50"
    assert data == encode_products("csv", products(1, 5), first_page=True), "paging never changes the bytes"


def test_json_lines_one_object_per_product() -> None:
    data = encode_products("jsonl", products(1, 2), first_page=True)
    lines = data.decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [1, 2]
    assert json.loads(lines[0])["price"] == "1.50" and "é" in lines[0]
    assert encode_products("jsonl", [], first_page=True) == b""


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        encode_products("xml", products(1, 1), first_page=True)


def test_export_paths(tmp_path: Path) -> None:
    final, partial = export_paths(str(tmp_path), "sub/products.csv")
    assert final == tmp_path / "sub/products.csv" and partial == tmp_path / "sub/products.csv.partial"
    for outside in ("/abs/x.jsonl", "../escape.csv", "sub/../../escape.csv", ""):
        with pytest.raises(PermanentError, match="export path"):
            export_paths(str(tmp_path), outside)
    (tmp_path / "link").symlink_to(tmp_path.parent, target_is_directory=True)
    with pytest.raises(PermanentError, match="leads outside"):
        export_paths(str(tmp_path), "link/x.csv")
