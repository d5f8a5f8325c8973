"""The photos table: images (product photos, delivery photos) waiting for their embedding vector.

One table for both registrations of the handler: a photo's ``owner`` names the registration
that vectorizes it (``product_photos`` or ``delivery_photos``), so each claims, counts and
writes only its own rows. The vector is stored portably (no pgvector needed): ``vector`` holds
its ``vector_dim`` float32 values little-endian (4 bytes each, a BLOB on SQLite, bytea on
PostgreSQL), ``vector_norm`` its Euclidean norm, ``model_version`` the model that made it;
:mod:`actors.photos.similar` compares vectors of one model and dimension only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from backlane import Base, BigId, literal_in


class PhotoStatus(StrEnum):
    PENDING = "pending"  # no embedding yet
    VECTORIZED = "vectorized"  # vector, its model version and dimension stored
    FAILED = "failed"  # refused for good (the API refused the image, the object is missing), with the reason


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: Name of the registration that vectorizes it.
    owner: Mapped[str] = mapped_column(String(100))
    #: What the photo shows, in the owner's terms (a product's SKU, a delivery's number).
    subject: Mapped[str | None] = mapped_column(String(200))
    #: Storage key of the image (see backlane.clients.storage).
    storage_key: Mapped[str] = mapped_column(String(500))
    #: The image's media type, e.g. image/png (sent to an OpenAI-compatible server in its data URL).
    content_type: Mapped[str] = mapped_column(String(100), default="image/jpeg", server_default="image/jpeg")
    status: Mapped[str] = mapped_column(
        String(16), default=PhotoStatus.PENDING.value, server_default=PhotoStatus.PENDING.value
    )
    #: float32 little-endian, ``vector_dim`` values.
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    vector_dim: Mapped[int | None] = mapped_column(Integer)
    vector_norm: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(200))
    vectorized_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    #: Until then the photo is in flight and discover leaves it alone.
    lease_until: Mapped[datetime | None]
    # Defaults in the database too, so a plain SQL insert of owner and storage_key adds a photo.
    created_at: Mapped[datetime] = mapped_column(server_default=text("CURRENT_TIMESTAMP"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("CURRENT_TIMESTAMP"))


#: The one definition of "a photo without its embedding": ix_photos_due's predicate and the
#: condition of the claims, counts and guarded writes (each registration reads its own slice).
PHOTOS_DUE = literal_in(Photo.status, [PhotoStatus.PENDING.value])
Index("ix_photos_due", Photo.owner, Photo.id, postgresql_where=PHOTOS_DUE, sqlite_where=PHOTOS_DUE)
#: The neighbours of a photo are read by registration and model.
Index("ix_photos_model", Photo.owner, Photo.model_version, Photo.vector_dim)
