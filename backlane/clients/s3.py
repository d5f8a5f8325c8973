"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Cloudflare R2...) behind :class:`Storage`.

Built on botocore, AWS's maintained low-level client (the ``s3`` extra): it signs
(SigV4), addresses (path or virtual host), pages ListObjectsV2 and parses S3's
error replies. Its own retries are off: an item's retries are backlane's, so a
failure is classified here, once, in :mod:`backlane.errors`'s vocabulary:

* deleting an object that is not there is a success (``delete`` returns False);
* ``503 SlowDown``, throttling codes, 5xx, timeouts and connection errors are transient,
  :class:`~backlane.errors.RateLimited` when the server names its delay (Retry-After);
* ``AccessDenied``, ``NoSuchBucket``, ``InvalidAccessKeyId``, ``SignatureDoesNotMatch`` and any
  other 4xx are :class:`S3Refused`, permanent, with S3's code and message as the reason;
* ``read`` of a missing object is :class:`~backlane.clients.storage.ObjectMissing`.

Credentials are :class:`~pydantic.SecretStr` settings handed to botocore alone; no reason,
log line or repr carries them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from backlane.clients.objects import (
    ObjectMissing,
    StoredObject,
    as_utc,
    checked_key,
    checked_limit,
    checked_prefix,
)
from backlane.errors import EXIT_CONFIG, PermanentError, Problem, RateLimited, TransientError, parse_delay_seconds

if TYPE_CHECKING:
    from backlane.settings import StorageSettings

logger = logging.getLogger("backlane.storage")

#: What ``pip install`` needs for ``kind = "s3"``.
EXTRA = "backlane[s3]"
#: Error codes S3 and its look-alikes use to say "slow down": transient, never the item's fault.
THROTTLING_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
     "RequestThrottled", "ServiceUnavailable", "503", "429"}
)  # fmt: skip
#: Codes that mean the deployment is wrong (credentials, bucket), not the object: named as such.
SETUP_CODES = {
    "AccessDenied": "check the bucket's policy and the rights of BACKLANE_STORAGE__ACCESS_KEY_ID",
    "NoSuchBucket": "check BACKLANE_STORAGE__BUCKET",
    "InvalidAccessKeyId": "check BACKLANE_STORAGE__ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "check BACKLANE_STORAGE__SECRET_ACCESS_KEY",
    "AuthorizationHeaderMalformed": "check BACKLANE_STORAGE__REGION",
    "PermanentRedirect": "the bucket is in another region or endpoint: check BACKLANE_STORAGE__REGION",
}


class S3Refused(PermanentError):
    """The object store refused the call for good (4xx: access denied, no such bucket, bad key)."""

    kind = "storage_refused"

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.code = code


class S3Unavailable(TransientError):
    """The object store did not answer (connection refused, timeout) or answered 5xx."""

    kind = "storage_unavailable"


class S3Throttled(RateLimited):
    """The object store asked us to slow down and named how long (Retry-After)."""

    kind = "storage_throttled"


def missing_extra() -> Problem | None:
    if importlib.util.find_spec("botocore") is None:
        return Problem(
            f"BACKLANE_STORAGE__KIND is s3 but botocore is not installed: pip install '{EXTRA}' "
            "(or set BACKLANE_STORAGE__KIND=directory)",
            EXIT_CONFIG,
        )
    return None


def check_settings(settings: StorageSettings) -> None:
    """The one line a process with ``kind = "s3"`` stops with when it cannot work as set."""
    problem = missing_extra()
    if problem is not None:
        raise problem
    if not settings.bucket:
        raise Problem("BACKLANE_STORAGE__BUCKET must be set when BACKLANE_STORAGE__KIND is s3", EXIT_CONFIG)
    if (settings.access_key_id is None) != (settings.secret_access_key is None):
        raise Problem(
            "BACKLANE_STORAGE__ACCESS_KEY_ID and BACKLANE_STORAGE__SECRET_ACCESS_KEY are set together "
            "(or both left unset, for botocore's own credential chain)",
            EXIT_CONFIG,
        )


def _delay_of(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    return parse_delay_seconds(value[:100]) if value else None


class S3Storage:
    """Objects in one bucket of an S3-compatible store; thread-safe (one botocore client)."""

    def __init__(self, settings: StorageSettings) -> None:
        check_settings(settings)
        import botocore.config
        import botocore.exceptions
        import botocore.session

        self._botocore = botocore.exceptions
        self.bucket: str = settings.bucket or ""
        self.endpoint = settings.endpoint_url or f"AWS S3 ({settings.region})"
        config = botocore.config.Config(
            region_name=settings.region,
            signature_version="s3v4",
            s3={"addressing_style": settings.addressing_style},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},  # backlane retries, not botocore
            max_pool_connections=settings.max_connections,
            user_agent_extra="backlane",
        )
        session = botocore.session.get_session()
        credentials: dict[str, Any] = {}
        if settings.access_key_id is not None and settings.secret_access_key is not None:
            credentials = {
                "aws_access_key_id": settings.access_key_id.get_secret_value(),
                "aws_secret_access_key": settings.secret_access_key.get_secret_value(),
            }
        self._client = session.create_client("s3", endpoint_url=settings.endpoint_url, config=config, **credentials)

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, endpoint={self.endpoint!r})"

    def where(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    # --- errors -----------------------------------------------------------------------------

    def _error(self, operation: str, key: str, exc: Exception) -> Exception:
        """``exc`` (a botocore error) in backlane's vocabulary, its reason naming the call and object."""
        where = f"S3 {operation} {self.where(key)}"
        errors = self._botocore
        if isinstance(exc, errors.ClientError):
            response: Any = exc.response
            error = response.get("Error") or {}
            code = str(error.get("Code") or "")[:100]
            message = " ".join(str(error.get("Message") or "").split())[:300]
            meta = response.get("ResponseMetadata") or {}
            status = int(meta.get("HTTPStatusCode") or 0)
            headers = meta.get("HTTPHeaders") or {}
            text = f"{code}: {message}" if message and message != code else code or f"HTTP {status}"
            if code in THROTTLING_CODES or status in (429, 503):
                delay = _delay_of(headers)
                if delay is not None:
                    return S3Throttled(f"{where} throttled ({text})", delay)
                return S3Unavailable(f"{where} throttled ({text}); retrying with backoff")
            if status >= 500 or status in (408,) or code in ("InternalError", "RequestTimeout"):
                return S3Unavailable(f"{where} answered {status} ({text})")
            hint = SETUP_CODES.get(code)
            if hint is None and status == 403:
                hint = SETUP_CODES["AccessDenied"]
            told = f"{code or status} ({hint}): {message}" if hint else text
            return S3Refused(f"{where} refused: {told}", code or str(status))
        if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError):
            return S3Refused(
                f"{where}: no S3 credentials (set BACKLANE_STORAGE__ACCESS_KEY_ID and "
                "BACKLANE_STORAGE__SECRET_ACCESS_KEY)",
                "NoCredentials",
            )
        if isinstance(exc, errors.ParamValidationError):
            return S3Refused(f"{where}: {exc}", "ParamValidation")
        if isinstance(exc, errors.BotoCoreError | OSError):  # connect/read timeouts, connection refused or reset
            return S3Unavailable(f"{where} failed: {type(exc).__name__}: {exc}"[:500])
        return exc

    def _call(self, operation: str, key: str, call: Any, **kwargs: Any) -> Any:
        try:
            return call(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            error = self._error(operation, key, exc)
            if error is exc:
                raise
            raise error from None

    @staticmethod
    def _is_missing(exc: Exception) -> bool:
        response: Any = getattr(exc, "response", None) or {}
        code = str((response.get("Error") or {}).get("Code") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return code == "NoSuchKey" or (status == 404 and code in ("404", "NotFound", ""))

    # --- Storage ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        checked_key(key)
        self._call("PutObject", key, self._client.put_object, Key=key, Body=data)

    def read(self, key: str) -> bytes:
        checked_key(key)
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=key)
            body = reply["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data
        except self._botocore.ClientError as exc:
            if self._is_missing(exc):
                raise ObjectMissing(key, self.where()) from None
            raise self._error("GetObject", key, exc) from None
        except Exception as exc:
            error = self._error("GetObject", key, exc)
            if error is exc:
                raise
            raise error from None

    def exists(self, key: str) -> bool:
        checked_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except self._botocore.ClientError as exc:
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status not in (400, 403, 404):
                raise self._error("HeadObject", key, exc) from None
            # A HEAD error has no body: "404" may be no such key or no such bucket, "403" a wrong
            # secret or a policy. A GET of one byte learns S3's own code and reason.
            try:
                self._client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0")
            except self._botocore.ClientError as again:
                if self._is_missing(again):
                    return False
                raise self._error("GetObject", key, again) from None
            except Exception as again:
                raise self._error("GetObject", key, again) from None
            return True
        except Exception as exc:
            error = self._error("HeadObject", key, exc)
            if error is exc:
                raise
            raise error from None
        return True

    def delete(self, key: str) -> bool:
        """True when the object was there; deleting one already gone is a success (False). S3's
        DeleteObject answers 204 either way, so a HEAD first tells which."""
        existed = True
        with contextlib.suppress(S3Refused):  # may read nothing yet delete: DeleteObject's answer decides
            existed = self.exists(key)
        if not existed:
            return False
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except self._botocore.ClientError as exc:
            if self._is_missing(exc):
                return False  # some S3 look-alikes answer 404 for a key already gone
            raise self._error("DeleteObject", key, exc) from None
        except Exception as exc:
            error = self._error("DeleteObject", key, exc)
            if error is exc:
                raise
            raise error from None
        return True

    def list(self, prefix: str = "", older_than: datetime | None = None, limit: int = 1000) -> Iterator[StoredObject]:
        """ListObjectsV2 page by page (its continuation token), keeping those older than
        ``older_than``, until ``limit`` are found or the listing ends."""
        checked_prefix(prefix)
        remaining = checked_limit(limit)
        cutoff = as_utc(older_than) if older_than is not None else None
        token: str | None = None
        while remaining > 0:
            arguments: dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000}
            if token:
                arguments["ContinuationToken"] = token
            page = self._call("ListObjectsV2", prefix, self._client.list_objects_v2, **arguments)
            for entry in page.get("Contents") or ():
                key, modified = entry.get("Key"), entry.get("LastModified")
                if not isinstance(key, str) or not isinstance(modified, datetime):
                    continue  # an entry we cannot read is not an object we may delete
                modified = as_utc(modified)
                if cutoff is not None and modified >= cutoff:
                    continue
                yield StoredObject(key, int(entry.get("Size") or 0), modified)
                remaining -= 1
                if remaining == 0:
                    return
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
