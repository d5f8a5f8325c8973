"""Image vectorization: the generic engine's built-in handler, registered twice.

Replaces the engine's ImageVectorization handler ("fetches photo records without embeddings,
generates embeddings using Azure AI, stores vectors in database"), registered as
``ProductImageVectorization`` (10 per cycle) and ``DeliveryImageVectorization`` (5 per cycle),
purpose internal. Here the same functions are registered as ``product_photos`` and
``delivery_photos``: each claims only the photos it owns (``photos.owner``), up to its own
limit, on its own queue, with its own settings section, embeddings API and breaker.

Per photo: read its image from storage, send it to the embeddings API
(:mod:`actors.photos.client`), store the checked vector with its model version and dimension.
A photo already vectorized is left alone, so a second delivery stores nothing twice.
"""

from __future__ import annotations

from typing import Any

from actors.photos.client import client_for
from actors.photos.commands import COMMANDS, COMMANDS_HELP
from actors.photos.health import breaker_for, health
from actors.photos.models import PHOTOS_DUE, Photo, PhotoStatus
from actors.photos.settings import PhotosSettings
from actors.photos.vectors import norm, pack
from backlane import Context, ItemTable, PermanentError, Pipeline, Purpose, UnknownItem, register, row_id
from backlane.clients.storage import storage_from_settings

#: Photos without their embedding, of one registration (each reads its own slice of
#: ix_photos_due), oldest first; failed for good with the reason.
PHOTO_ROWS = ItemTable(
    Photo,
    due=PHOTOS_DUE,
    order_by=(Photo.id,),
    owner=Photo.owner,
    done=Photo.status == PhotoStatus.VECTORIZED.value,
    failed=Photo.status == PhotoStatus.FAILED.value,
    fail=lambda reason, _now: {"status": PhotoStatus.FAILED.value, "failure_reason": reason},
    reopened={"status": PhotoStatus.PENDING.value, "failure_reason": None},
    search=(Photo.subject, Photo.storage_key),
    reason=Photo.failure_reason,
)


def process(ctx: Context[PhotosSettings], item: Any) -> None:
    photo_id = row_id(item, "photo")
    photo = PHOTO_ROWS.load(ctx, photo_id, Photo.owner, Photo.status, Photo.storage_key, Photo.content_type)
    if photo is None:
        raise UnknownItem(f"photo {photo_id} does not exist")
    if photo.owner != ctx.pipeline.name:
        raise PermanentError(f"photo {photo_id} belongs to {photo.owner!r}, not {ctx.pipeline.name!r}")
    if not photo.has_work:
        ctx.log.info("photo %s is already %s; nothing to do", photo_id, photo.status)
        return
    config = ctx.config
    image = storage_from_settings(ctx.settings.storage).read(photo.storage_key)
    if len(image) > config.max_image_bytes:
        raise PermanentError(
            f"photo {photo_id}: its image is {len(image)} bytes, more than "
            f"{ctx.pipeline.name}.max_image_bytes ({config.max_image_bytes})"
        )
    if not image:
        raise PermanentError(f"photo {photo_id}: its stored image {photo.storage_key!r} is empty")
    client = client_for(config, ctx.pipeline.name)
    with breaker_for(ctx).guard():
        embedding = client.embed(image, photo.content_type)
    # Only while still pending: a photo vectorized by another delivery meanwhile is not written again.
    PHOTO_ROWS.update(
        ctx,
        photo_id,
        status=PhotoStatus.VECTORIZED.value,
        vector=pack(embedding.vector),
        vector_dim=len(embedding.vector),
        vector_norm=norm(embedding.vector),
        model_version=embedding.model_version,
        vectorized_at=ctx.clock.now(),
        failure_reason=None,
        lease_until=None,
    )


def photos_pipeline(name: str, description: str, max_items: int) -> Pipeline[PhotosSettings]:
    """One registration of the handler: the same functions, its own name, limit and section."""
    return Pipeline(
        name=name,
        purpose=Purpose.INTERNAL,
        config=PhotosSettings,
        defaults={"max_items": max_items},
        table=PHOTO_ROWS,
        process=process,
        health=health,
        commands=COMMANDS,
        commands_help=COMMANDS_HELP,
        description=description,
    )


#: Product photos: 10 per cycle; delivery photos: 5 (each overridable in its own section).
PRODUCT_PHOTOS = register(photos_pipeline("product_photos", "store the embedding vector of each product photo", 10))
DELIVERY_PHOTOS = register(photos_pipeline("delivery_photos", "store the embedding vector of each delivery photo", 5))
