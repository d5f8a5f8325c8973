"""Both storage backends against the same contract: a real directory and a real S3-speaking server.

The S3 side runs on the session's server (moto's server mode on loopback, or BACKLANE_TEST_S3_URL's
MinIO/S3): real HTTP, real SigV4, real ListObjectsV2 pages and S3's own error replies.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from backlane.app import setup
from backlane.clients import s3 as s3_module
from backlane.clients.s3 import S3Refused, S3Storage, S3Throttled, S3Unavailable
from backlane.clients.storage import (
    DirectoryStorage,
    InvalidKey,
    ObjectMissing,
    Storage,
    check_storage,
    storage_from_settings,
)
from backlane.errors import PermanentError, Problem, RateLimited, TransientError
from backlane.settings import StorageSettings
from devtools.infra.s3 import Credentials, S3Target


@pytest.fixture(params=["directory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "directory":
        return DirectoryStorage(tmp_path / "objects")
    target: S3Target = request.getfixturevalue("s3")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Storage(StorageSettings(**target.settings(bucket)))


def test_put_read_exists_delete_on_both_backends(storage: Storage) -> None:
    storage.put("audio/1.mp3", b"abc")
    storage.put("audio/1.mp3", b"abcd")  # replaced

    assert storage.read("audio/1.mp3") == b"abcd"
    assert storage.exists("audio/1.mp3") and not storage.exists("audio/2.mp3")
    assert storage.delete("audio/1.mp3") is True
    assert storage.delete("audio/1.mp3") is False, "already gone is a success"
    with pytest.raises(ObjectMissing) as missing:
        storage.read("audio/1.mp3")
    assert isinstance(missing.value, PermanentError) and missing.value.key == "audio/1.mp3"
    # An object store takes keys byte for byte: one that only normalises to a safe key is refused too.
    unnormal = ("a//b", "./a") if isinstance(storage, S3Storage) else ()
    for bad in ("../x", "/etc/passwd", "", *unnormal):
        for call in (storage.read, storage.delete, storage.exists):
            with pytest.raises(InvalidKey):
                call(bad)


def test_list_keeps_to_prefix_age_and_limit_on_both_backends(storage: Storage, tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        storage.put(f"search-images/{name}.jpg", name.encode() * 3)
    storage.put("search-images-other/x.jpg", b"x")
    storage.put("keep/y.jpg", b"y")

    listed = list(storage.list("search-images/", None, 10))
    assert [o.key for o in listed] == [f"search-images/{n}.jpg" for n in "abcd"]
    assert all(o.size == 3 and o.last_modified.tzinfo is UTC for o in listed)
    assert abs((listed[0].last_modified - datetime.now(UTC)).total_seconds()) < 120
    assert [o.key for o in storage.list("search-images/", None, 2)] == ["search-images/a.jpg", "search-images/b.jpg"]
    assert list(storage.list("search-images/", datetime.now(UTC) - timedelta(hours=1), 10)) == []
    assert len(list(storage.list("search-images/", datetime.now(UTC) + timedelta(minutes=5), 10))) == 4
    assert list(storage.list("nothing-here/", None, 10)) == []
    assert list(storage.list("search-images/", None, 0)) == []


def test_directory_list_reads_file_times_and_skips_writes_under_way(tmp_path: Path) -> None:
    storage = DirectoryStorage(tmp_path / "objects")
    now = time.time()
    for age_h, name in ((30, "old"), (23, "young")):
        storage.put(f"p/{name}", b"x")
        os.utime(storage.path(f"p/{name}"), (now - age_h * 3600, now - age_h * 3600))
    (tmp_path / "objects/p/.half.0123abcd.tmp").write_bytes(b"half")

    cutoff = datetime.now(UTC) - timedelta(hours=24)
    assert [o.key for o in storage.list("p/", cutoff, 10)] == ["p/old"]
    assert [o.key for o in storage.list("p/", None, 10)] == ["p/old", "p/young"]


def test_s3_listing_follows_continuation_pages(s3: S3Target, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = S3Storage(StorageSettings(**s3.settings(s3_bucket)))
    for i in range(7):
        storage.put(f"p/{i}", b"x")
    pages: list[dict[str, object]] = []
    real = storage._client.list_objects_v2

    def small_pages(**arguments: object) -> object:
        pages.append(arguments)
        return real(**{**arguments, "MaxKeys": 2})

    monkeypatch.setattr(storage._client, "list_objects_v2", small_pages)

    assert [o.key for o in storage.list("p/", None, 100)] == [f"p/{i}" for i in range(7)]
    assert len(pages) == 4 and "ContinuationToken" in pages[1]
    pages.clear()
    assert len(list(storage.list("p/", None, 3))) == 3 and len(pages) == 2, "stops paging once the limit is met"


def test_s3_refusals_are_permanent_with_the_reason_and_name_the_setting(s3: S3Target, s3_bucket: str) -> None:
    good = S3Storage(StorageSettings(**s3.settings(s3_bucket)))
    good.put("k", b"v")
    wrong_secret = {**s3.settings(s3_bucket), "secret_access_key": SecretStr("not-the-secret")}
    unknown_key = {**s3.settings(s3_bucket), "access_key_id": SecretStr("AKIAUNKNOWNUNKNOWN00")}
    no_bucket = {**s3.settings(s3_bucket), "bucket": "no-such-bucket-here"}
    cases = [
        (wrong_secret, "SignatureDoesNotMatch", "BACKLANE_STORAGE__SECRET_ACCESS_KEY"),
        (unknown_key, "InvalidAccessKeyId", "BACKLANE_STORAGE__ACCESS_KEY_ID"),
        (no_bucket, "NoSuchBucket", "BACKLANE_STORAGE__BUCKET"),
    ]
    for values, code, setting in cases:
        storage = S3Storage(StorageSettings(**values))
        calls = (lambda s=storage: s.delete("k"), lambda s=storage: s.read("k"), lambda s=storage: list(s.list("")))
        for call in calls:
            with pytest.raises(S3Refused) as refused:
                call()
            assert refused.value.code == code and setting in refused.value.reason, refused.value.reason
            assert "not-the-secret" not in refused.value.reason
            assert s3.admin.secret_access_key not in refused.value.reason
    assert good.read("k") == b"v", "nothing was deleted by a refused call"
    assert "not-the-secret" not in repr(S3Storage(StorageSettings(**wrong_secret)))


def test_s3_access_denied_to_a_reader_is_permanent(s3: S3Target, s3_bucket: str) -> None:
    if s3.reader is None:
        pytest.fail("this test needs the bundled S3 server's read-only user (unset BACKLANE_TEST_S3_URL)")
    S3Storage(StorageSettings(**s3.settings(s3_bucket))).put("k", b"v")
    reader = S3Storage(StorageSettings(**s3.settings(s3_bucket, s3.reader)))

    assert reader.read("k") == b"v"
    with pytest.raises(S3Refused) as refused:
        reader.delete("k")
    assert refused.value.code == "AccessDenied" and "Access Denied" in refused.value.reason
    assert reader.read("k") == b"v"


def test_s3_throttling_and_outages_are_transient(s3: S3Target, s3_bucket: str) -> None:
    storage = S3Storage(StorageSettings(**s3.settings(s3_bucket)))
    storage.put("t/1", b"v")
    s3.throttle(1, match="t/1", retry_after=7)
    with pytest.raises(S3Throttled) as named:
        storage.delete("t/1")
    assert isinstance(named.value, RateLimited) and named.value.delay_seconds == 7
    s3.throttle(1, match="t/1")
    with pytest.raises(S3Unavailable) as unnamed:
        storage.read("t/1")
    assert "SlowDown" in unnamed.value.reason and isinstance(unnamed.value, TransientError)
    assert storage.delete("t/1") is True, "the next call goes through"

    closed = {**s3.settings(s3_bucket), "endpoint_url": "http://127.0.0.1:9", "connect_timeout": 0.5}
    with pytest.raises(S3Unavailable, match="failed: EndpointConnectionError"):
        S3Storage(StorageSettings(**closed)).delete("t/1")


def test_settings_choose_the_backend_and_bad_ones_stop_start_up(
    s3: S3Target, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(storage_from_settings(StorageSettings(root=str(tmp_path))), DirectoryStorage)
    chosen = storage_from_settings(StorageSettings(**s3.settings(s3_bucket)))
    assert isinstance(chosen, S3Storage) and chosen is storage_from_settings(StorageSettings(**s3.settings(s3_bucket)))

    with pytest.raises(Problem, match="BACKLANE_STORAGE__BUCKET must be set"):
        check_storage(StorageSettings(kind="s3"))
    with pytest.raises(Problem, match="set together"):
        check_storage(StorageSettings(kind="s3", bucket="abc", access_key_id=Credentials("x", "y").access_key_id))
    monkeypatch.setattr(s3_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(Problem) as missing:
        check_storage(StorageSettings(kind="s3", bucket="abc"))
    assert "pip install 'backlane[s3]'" in missing.value.line and "\n" not in missing.value.line
    assert setup is not None  # the start-up path (backlane.app.setup) runs check_storage first
