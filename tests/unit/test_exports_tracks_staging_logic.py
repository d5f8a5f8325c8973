"""Pure logic of the tracks, exports and staging pipelines: defaults, encoding, health, backoff."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from backlane.clients.product_api import health_is_up
from backlane.core.processing import RetryPolicy
from backlane.pipelines.exports.files import COLUMNS, encode_products, export_paths
from backlane.settings import Settings, load_settings
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


def test_defaults_match_the_design(clean_env: None) -> None:
    settings = load_settings()
    tracks, exports = settings.tracks, settings.exports
    assert (tracks.tick, tracks.max_items, tracks.enabled) == ("*/5 * * * *", 50, True)
    assert (exports.interval_seconds, exports.initial_delay_seconds, exports.health_timeout_seconds) == (300, 30, 10)
    assert (exports.max_retries, exports.min_backoff_ms, exports.max_backoff_ms) == (2, 30_000, 300_000)
    assert (exports.breaker_failure_threshold, exports.breaker_open_seconds) == (3, 30)
    assert (settings.staging_acme.max_items, settings.staging_globex.max_items) == (5, 10)


def test_each_staging_section_is_configured_on_its_own(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLANE_STAGING_ACME__TICK", "*/2 * * * *")
    monkeypatch.setenv("BACKLANE_STAGING_GLOBEX__BASE_URL", "http://globex.example")
    settings = Settings()
    assert (settings.staging_acme.tick, settings.staging_acme.max_items) == ("*/2 * * * *", 5)
    assert (settings.staging_globex.base_url, settings.staging_globex.max_items) == ("http://globex.example", 10)
    assert settings.staging_acme.base_url != "http://globex.example"


def test_export_backoff_starts_at_30_s_doubles_and_stops_at_300_s(clean_env: None) -> None:
    exports = load_settings().exports
    assert exports.max_retries is not None and exports.min_backoff_ms and exports.max_backoff_ms
    policy = RetryPolicy(exports.max_retries, exports.min_backoff_ms, exports.max_backoff_ms)
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
    assert export_paths("out", "/abs/x.jsonl")[0] == Path("/abs/x.jsonl")
