"""Sample data for the demo, tests and benchmarks: orders, deleted tracks with their stored
objects, product exports, staging batches, photos (small real PNG images) and stale objects for the
storage cleanup."""

from __future__ import annotations

import random
import struct
import uuid
import zlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from actors.exports.models import Export
from actors.orders.models import Order, OrderStatus
from actors.photos.models import Photo
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


#: Colour families of sample photos (r, g, b): photos of one family are near neighbours.
PHOTO_FAMILIES = ((200, 40, 40), (40, 160, 60), (40, 70, 200), (220, 200, 50), (120, 120, 120))


def png_image(rgb: tuple[int, int, int], seed: int, size: int = 8) -> bytes:
    """A real ``size`` x ``size`` 8-bit RGB PNG of colour ``rgb``, each pixel jittered by ``seed``:
    different seeds give different bytes (and vectors), one colour gives near vectors."""
    rng = random.Random(seed)
    rows = b"".join(
        b"\x00" + bytes(max(0, min(255, c + rng.randint(-25, 25))) for _ in range(size) for c in rgb)
        for _ in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def create_photos(
    db: Database,
    storage: Storage,
    owner: str,
    count: int,
    now: datetime,
    *,
    refused: int = 0,
    batch: int = 5000,
) -> list[int]:
    """``count`` photos of registration ``owner`` without embeddings, each a distinct small PNG in
    storage (under ``photos/<owner>/``), in :data:`PHOTO_FAMILIES` by turn; ``refused`` more whose
    bytes are no image format, which the embeddings API refuses."""
    rows: list[dict[str, Any]] = []
    for i in range(count + refused):
        key = f"photos/{owner}/{i}.png"
        family = i % len(PHOTO_FAMILIES)
        good = i < count
        storage.put(
            key,
            png_image(PHOTO_FAMILIES[family], seed=zlib.crc32(key.encode()))
            if good
            else b"not an image " + str(i).encode(),
        )
        rows.append(
            {
                "owner": owner,
                "subject": f"{owner}-{i} (family {family})" if good else f"{owner}-{i} (not an image)",
                "storage_key": key,
                "content_type": "image/png",
                "status": "pending",
                "created_at": now,
                "updated_at": now,
            }
        )
    ids: list[int] = []
    for start in range(0, len(rows), batch):
        with db.transaction() as session:
            ids.extend(session.execute(insert(Photo).returning(Photo.id), rows[start : start + batch]).scalars())
    return ids
