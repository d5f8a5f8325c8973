"""Storage cleanup: delete the objects under a prefix that are older than an age.

Replaces the work-item engine's blob-cleanup handler ("blobs in ``search-images``
created more than 24 h ago", at most maxItems per cycle). Its items are not rows:
each tick lists the store (:meth:`backlane.clients.storage.Storage.list`, through
the settings' backend: a directory or S3) under ``prefix`` for objects last
modified before the injected clock's now minus ``max_age_hours``, and each key
listed is one item, claimed with a lease (:class:`backlane.core.listed.ListedItems`)
and deleted on its own. An object already gone is a success, so two workers, two
clocks or a redelivery never make an error of it; a listing that fails (the store
down, access denied) is a failed tick, retried at the next one. A key that failed
for good keeps its reason in ``listed_items`` (``backlane status``, the dashboard).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from actors.cleanup.settings import CleanupSettings
from backlane import Context, Pipeline, Purpose, register
from backlane.clients.storage import InvalidKey, checked_key, storage_from_settings
from backlane.core.listed import ListedItems, text_item


def stale_keys(ctx: Context[CleanupSettings], limit: int) -> Iterator[str]:
    """Keys under the prefix last modified before now minus the age, at most ``limit``."""
    config = ctx.config
    cutoff = ctx.clock.now() - timedelta(hours=config.max_age_hours)
    storage = storage_from_settings(ctx.settings.storage)
    for stored in storage.list(config.prefix, cutoff, limit):
        yield stored.key


def checked(ctx: Context[CleanupSettings], item: Any) -> str:
    """The item is a storage key under the configured prefix: a message naming any other object
    (a forged one, or one from before the prefix changed) deletes nothing and fails for good."""
    key = checked_key(text_item(item, "a cleanup item (a storage key)"))
    if not key.startswith(ctx.config.prefix):
        raise InvalidKey(f"storage key {key!r} is not under BACKLANE_CLEANUP__PREFIX {ctx.config.prefix!r}")
    return key


STALE_OBJECTS = ListedItems(source=stale_keys, check=checked, lease_seconds=lambda ctx: ctx.config.lease_seconds)


def delete_object(ctx: Context[CleanupSettings], key: str) -> bool:
    """Delete one object; False (a success, not counted as a deletion) when it was already gone."""
    storage = storage_from_settings(ctx.settings.storage)
    if storage.delete(key):
        return True
    ctx.log.info("object %r was already gone", key)
    return False


CLEANUP = register(
    Pipeline(
        name="cleanup",
        purpose=Purpose.INTERNAL,
        config=CleanupSettings,
        process=STALE_OBJECTS.process(delete_object),
        **STALE_OBJECTS.hooks(),
        description="delete stored objects under a prefix older than an age (listed from storage, not a table)",
    )
)
