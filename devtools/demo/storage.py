"""The demo's object storage: the demo folder's ``storage/`` directory, or with ``--storage s3`` a
private S3 server on loopback (moto's server mode, :mod:`devtools.infra.s3`) with one bucket.

:func:`start_s3` starts the server and returns the ``BACKLANE_STORAGE__*`` settings every process of
the demo gets (this one too, so the demo parts seed and check the same store the worker deletes
from); :func:`demo_storage` is that store for a part."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backlane.clients.storage import DirectoryStorage, Storage, storage_from_settings
from backlane.errors import SettingsError

BUCKET = "backlane-demo"


def start_s3(workdir: Path, running: Any) -> dict[str, str]:
    from devtools.demo.errors import DemoError
    from devtools.infra.s3 import MissingS3Server, S3Server, S3StartError

    server = S3Server(workdir / "s3")
    try:
        server.start()
    except (MissingS3Server, S3StartError) as exc:
        raise DemoError(f"--storage s3: {exc}") from None
    running.s3 = server
    from devtools.infra.s3 import client

    client(server.url, "s3", server.admin).create_bucket(Bucket=BUCKET)
    environment = server.environment(BUCKET)
    os.environ.update(environment)
    print(f"S3 server (moto) on {server.url}, bucket {BUCKET}; BACKLANE_STORAGE__KIND=s3")
    return environment


def demo_storage(root: Path) -> Storage:
    """The store the demo's processes use: S3 when ``--storage s3`` set it up, else ``root``."""
    if os.environ.get("BACKLANE_STORAGE__KIND") == "s3":
        from backlane.settings import load_settings

        try:
            return storage_from_settings(load_settings().storage)
        except SettingsError as exc:
            raise RuntimeError(str(exc)) from None
    return DirectoryStorage(root)
