"""Photos most similar to a photo: exact cosine over the stored vectors, on SQLite and PostgreSQL.

The candidates are the photos of the same registration whose vectors were made by the same
model with the same dimension (vectors of two models are not comparable), read in pages
of ``PAGE`` rows by id and scored in Python against the photo's vector, keeping the best
``limit`` in a heap: memory stays O(page + limit) whatever the table's size, time is one pass
over the registration's vectors (about 4 KiB each for 1024 dimensions). That is exact and
needs nothing installed; for millions of photos an index does it in SQL instead (pgvector's
``vector(1024)`` column with an HNSW index, ``ORDER BY embedding <=> :query``: see
docs/pipelines/photos.md).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from sqlalchemy import select

from actors.photos.models import Photo, PhotoStatus
from actors.photos.vectors import cosine, unpack
from backlane import UnknownItem
from backlane.db.engine import Database

#: Candidate rows read per query.
PAGE = 500


@dataclass(frozen=True)
class Neighbour:
    photo_id: int
    similarity: float
    subject: str | None
    storage_key: str


class NotVectorized(UnknownItem):
    """The photo asked about has no vector (yet, or it failed)."""

    kind = "not_vectorized"


def most_similar(db: Database, photo_id: int, limit: int = 5, owner: str | None = None) -> list[Neighbour]:
    """The ``limit`` photos most similar to ``photo_id`` (normally itself first, at 1.0), best first."""
    with db.transaction() as session:
        photo = session.get(Photo, photo_id)
        if photo is None or (owner is not None and photo.owner != owner):
            raise UnknownItem(f"no photo {photo_id}" + (f" of {owner}" if owner else ""))
        if photo.status != PhotoStatus.VECTORIZED.value or photo.vector is None or not photo.vector_norm:
            raise NotVectorized(f"photo {photo_id} has no vector yet (status {photo.status})")
        query, query_norm = unpack(photo.vector), photo.vector_norm
        same_model = (
            Photo.owner == photo.owner,
            Photo.model_version == photo.model_version,
            Photo.vector_dim == photo.vector_dim,
            Photo.status == PhotoStatus.VECTORIZED.value,
        )
    best: list[tuple[float, bool, int, Neighbour]] = []
    after = None
    while True:
        with db.transaction() as session:
            statement = select(Photo.id, Photo.vector, Photo.vector_norm, Photo.subject, Photo.storage_key).where(
                *same_model
            )
            if after is not None:
                statement = statement.where(Photo.id > after)
            rows = session.execute(statement.order_by(Photo.id).limit(PAGE)).all()
        for row_id, vector, row_norm, subject, key in rows:
            if vector is None:  # not possible for a vectorized photo; a hand-edited row is passed over
                continue
            score = cosine(query, query_norm, unpack(vector), row_norm or 0.0)
            # Ties (a duplicate image): the photo itself first, then the oldest.
            entry = (score, row_id == photo_id, -row_id, Neighbour(row_id, score, subject, key))
            if len(best) < limit:
                heapq.heappush(best, entry)
            elif entry[:3] > best[0][:3]:
                heapq.heapreplace(best, entry)
        if len(rows) < PAGE:
            break
        after = rows[-1][0]
    return [entry[3] for entry in sorted(best, key=lambda e: e[:3], reverse=True)]
