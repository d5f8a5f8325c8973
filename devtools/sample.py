"""Sample data for the demo, tests and benchmarks: orders, deleted tracks with their stored
objects, product exports, staging batches and stale objects for the storage cleanup."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from actors.exports.models import Export
from actors.orders.models import Order, OrderStatus
from actors.staging.models import StagingBatch, StagingStatus
from actors.tracks.models import Track, TrackStatus
from backlane.clients.storage import DirectoryStorage, Storage
from backlane.db.engine import Database


def order_rows(
    count: int, now: datetime, *, spread: timedelta = timedelta(hours=48), **overrides: Any
) -> list[dict[str, Any]]:
    step = spread / max(count, 1)
    return [
        {
            "request_id": str(uuid.uuid4()),
            "customer": f"customer-{i % 97}",
            "payload": {"items": [{"sku": f"SKU-{i % 13}", "quantity": 1 + i % 3}]},
            "status": OrderStatus.PENDING.value,
            "created_at": now - step * i,
            "updated_at": now,
            **overrides,
        }
        for i in range(count)
    ]


def create_orders(db: Database, count: int, now: datetime, *, batch: int = 5000, **overrides: Any) -> list[int]:
    """Insert ``count`` pending orders spread over the last 48 hours; returns their ids."""
    ids: list[int] = []
    rows = order_rows(count, now, **overrides)
    for start in range(0, len(rows), batch):
        with db.transaction() as session:
            result = session.execute(insert(Order).returning(Order.id), rows[start : start + batch])
            ids.extend(result.scalars())
    return ids


def create_tracks(
    db: Database, storage: Storage, count: int, now: datetime, *, kept: int = 0, broken: int = 0
) -> list[int]:
    """``count`` soft-deleted tracks due for physical deletion, each with its audio and waveform
    stored; ``kept`` more that are not due (still active); ``broken`` more due tracks whose audio
    key would leave the storage directory, which fail for good with that reason."""
    rows: list[dict[str, Any]] = []
    for i in range(count + kept):
        audio, waveform = f"audio/track-{i}.mp3", f"waveforms/track-{i}.json"
        storage.put(audio, b"ID3 sample audio " + str(i).encode())
        storage.put(waveform, b"[0.1, 0.4, 0.2]")
        deleted = i < count
        rows.append(
            {
                "title": f"Track {i}",
                "status": TrackStatus.DELETED.value if deleted else TrackStatus.ACTIVE.value,
                "audio_key": audio,
                "waveform_key": waveform,
                "delete_after": now - timedelta(hours=1) if deleted else None,
                "created_at": now - timedelta(days=90),
                "updated_at": now,
            }
        )
    for i in range(broken):
        rows.append(
            {
                "title": f"Broken track {i}",
                "status": TrackStatus.DELETED.value,
                "audio_key": f"../outside/track-{i}.mp3",
                "waveform_key": None,
                "delete_after": now - timedelta(hours=1),
                "created_at": now - timedelta(days=90),
                "updated_at": now,
            }
        )
    with db.transaction() as session:
        return list(session.execute(insert(Track).returning(Track.id), rows).scalars())


def create_exports(db: Database, now: datetime, formats: tuple[str, ...] = ("csv", "jsonl")) -> list[int]:
    """One product export per format (``products.csv``, ``products.jsonl``), first run due at once."""
    rows = [
        {
            "name": f"products-{fmt}",
            "format": fmt,
            "path": f"products.{fmt}",
            "next_page": 1,
            "rows_written": 0,
            "partial_bytes": 0,
            "next_run_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for fmt in formats
    ]
    with db.transaction() as session:
        return list(session.execute(insert(Export).returning(Export.id), rows).scalars())


def create_staging_batches(
    db: Database, now: datetime, per_processor: dict[str, int], *, rejected: dict[str, int] | None = None
) -> dict[str, list[int]]:
    """Pending staging batches (a few URLs each) for each processor (a staging registration's
    name); ``rejected`` more per processor with no URLs, which the vendor refuses (422)."""
    ids: dict[str, list[int]] = {}
    for processor, count in per_processor.items():
        payloads: list[dict[str, Any]] = [
            {"urls": [f"https://shop.example/{processor}/p/{i}", f"https://shop.example/{processor}/p/{i}/reviews"]}
            for i in range(count)
        ]
        payloads += [{"urls": []} for _ in range((rejected or {}).get(processor, 0))]
        rows = [
            {"processor": processor, "payload": p, "status": StagingStatus.PENDING.value, "created_at": now}
            | {"updated_at": now}
            for p in payloads
        ]
        with db.transaction() as session:
            ids[processor] = list(session.execute(insert(StagingBatch).returning(StagingBatch.id), rows).scalars())
    return ids


def create_stale_objects(
    storage: Storage, prefix: str, stale: int, fresh: int, age: timedelta, *, outside: int = 0
) -> dict[str, list[str]]:
    """``stale`` objects under ``prefix`` last modified ``age`` ago plus a day (on a directory, by
    their file times; an object store sets its own times, so there they are merely written first),
    ``fresh`` ones written now, and ``outside`` more beside the prefix that cleanup must not touch.
    Their keys by kind."""
    import os
    import time

    keys = {
        "stale": [f"{prefix}stale-{i}.jpg" for i in range(stale)],
        "fresh": [f"{prefix}fresh-{i}.jpg" for i in range(fresh)],
        "outside": [f"kept-images/image-{i}.jpg" for i in range(outside)],
    }
    when = time.time() - (age + timedelta(days=1)).total_seconds()
    for kind, names in keys.items():
        for key in names:
            storage.put(key, f"sample {kind} image".encode())
            if kind == "stale" and isinstance(storage, DirectoryStorage):
                os.utime(storage.path(key), (when, when))
    return keys
