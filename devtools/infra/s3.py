"""A private S3-speaking server for tests, the demo and the docs (moto's server mode, on loopback).

Like :mod:`devtools.infra.rabbitmq`, it runs as its own process on a free port and goes
away with the process that started it. Once up, it is set up as a real deployment
would be: an IAM user ``backlane`` whose access key may do anything in S3, a user
``reader`` that may only read and list, and then authentication turned on, so a wrong
secret is ``SignatureDoesNotMatch``, an unknown key ``InvalidAccessKeyId`` and the reader
deleting ``AccessDenied``, exactly as AWS or MinIO answer. ``BACKLANE_TEST_S3_URL`` (with
``BACKLANE_TEST_S3_ACCESS_KEY_ID``/``..._SECRET_ACCESS_KEY``) points the tests at a real
MinIO or S3 instead; the tests that need the fault knob or the reader say so and fail there.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from devtools.infra.ports import free_port
from devtools.infra.process import die_with_parent, stop_group, tail

INSTALL_HINT = (
    "the S3 test server (moto's server mode) is not installed. Fix: `scripts/bootstrap` "
    "(it installs the test extra), or `.venv/bin/pip install 'moto[server]>=5,<6'`; or point the "
    "tests at a MinIO/S3 you run with BACKLANE_TEST_S3_URL, BACKLANE_TEST_S3_ACCESS_KEY_ID and "
    "BACKLANE_TEST_S3_SECRET_ACCESS_KEY."
)
REGION = "us-east-1"


class MissingS3Server(RuntimeError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{INSTALL_HINT} {detail}".strip())


class S3StartError(RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


def moto_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("moto", "flask", "werkzeug", "botocore"))


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def client(url: str, service: str, credentials: Credentials) -> Any:
    """A botocore client of ``service`` at ``url`` (path-style, no retries)."""
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        region_name=REGION,
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=30,
    )
    return botocore.session.get_session().create_client(
        service,
        endpoint_url=url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        config=config,
    )


class S3Target:
    """An S3 endpoint with its credentials: what tests and the demo make buckets on."""

    url: str
    admin: Credentials
    reader: Credentials | None = None
    #: The fault knob (``throttle``): only the bundled server has one.
    has_faults = False

    def new_bucket(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:20]}"
        client(self.url, "s3", self.admin).create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, credentials: Credentials | None = None) -> dict[str, Any]:
        """``storage`` settings for ``bucket`` on this server (the admin's key unless told)."""
        use = credentials or self.admin
        return {
            "kind": "s3",
            "endpoint_url": self.url,
            "bucket": bucket,
            "region": REGION,
            "access_key_id": SecretStr(use.access_key_id),
            "secret_access_key": SecretStr(use.secret_access_key),
            "addressing_style": "path",
            "connect_timeout": 2.0,
            "read_timeout": 10.0,
        }

    def environment(self, bucket: str) -> dict[str, str]:
        """The same as ``BACKLANE_STORAGE__*`` variables, for processes (workers, the demo)."""
        return {
            f"BACKLANE_STORAGE__{k.upper()}": v.get_secret_value() if isinstance(v, SecretStr) else str(v)
            for k, v in self.settings(bucket).items()
        }

    def throttle(self, count: int, match: str = "", retry_after: float | None = None) -> dict[str, int]:
        raise RuntimeError(
            f"{self.url} has no fault knob: throttling needs the bundled S3 server (unset BACKLANE_TEST_S3_URL)"
        )

    def throttled(self) -> int:
        return 0


class ExternalS3(S3Target):
    """A MinIO or S3 someone else runs (``BACKLANE_TEST_S3_URL``)."""

    def __init__(self, url: str, access_key_id: str, secret_access_key: str) -> None:
        self.url = url.rstrip("/")
        self.admin = Credentials(access_key_id, secret_access_key)


_running: weakref.WeakSet[S3Server] = weakref.WeakSet()


@atexit.register
def _stop_running() -> None:
    for server in list(_running):
        server.stop()


class S3Server(S3Target):
    """moto's S3 with the fault knob (:mod:`devtools.infra.s3_server`), private to this process."""

    has_faults = True
    host = "127.0.0.1"

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.port = port or free_port()
        self.url = f"http://{self.host}:{self.port}"
        self.log = self.base_dir / "s3-server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.admin = Credentials("", "")

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        if self.is_running():
            return
        if not moto_installed():
            raise MissingS3Server()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        # moto writes nothing to disk; its account is fixed so users and keys are its own.
        env.update(MOTO_ACCOUNT_ID="123456789012", AWS_DEFAULT_REGION=REGION)
        root = Path(__file__).resolve().parents[2]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.infra.s3_server", "--host", self.host, "--port", str(self.port)],
                env=env,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise S3StartError(f"the S3 server exited with {self._proc.returncode}:\n{tail(self.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_backlane/throttle", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise S3StartError(f"the S3 server did not answer within {timeout:.0f} s:\n{tail(self.log)}")
            time.sleep(0.1)
        self._set_up_users()

    def _set_up_users(self) -> None:
        """Users and keys while moto checks nothing, then authentication on for every request."""
        anyone = Credentials("AKIASETUPSETUPSETUP0", "setup")
        iam = client(self.url, "iam", anyone)
        allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        read_only = {
            "Version": "2012-10-17",
            "Statement": [
                # s3:List*: AWS checks s3:ListBucket for ListObjects(V2); moto 5.2.6 checks
                # s3:ListObjects / s3:ListObjectsV2 instead, and denied the reader its listing.
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:HeadObject", "s3:List*"], "Resource": "*"}
            ],
        }
        keys = {}
        for user, policy in (("backlane", allow_all), ("reader", read_only)):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=f"{user}-s3", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        self.admin, self.reader = keys["backlane"], keys["reader"]
        answer = httpx.post(f"{self.url}/moto-api/reset-auth", content=b"0", timeout=5)
        answer.raise_for_status()

    def throttle(self, count: int, match: str = "", retry_after: float | None = None) -> dict[str, int]:
        """The next ``count`` requests whose path holds ``match`` answer 503 SlowDown."""
        body: dict[str, Any] = {"count": count, "match": match}
        if retry_after is not None:
            body["retry_after"] = retry_after
        answer = httpx.post(f"{self.url}/_backlane/throttle", json=body, timeout=5)
        answer.raise_for_status()
        return dict(answer.json())

    def throttled(self) -> int:
        """Requests answered 503 SlowDown since the last ``throttle``."""
        return int(httpx.get(f"{self.url}/_backlane/throttle", timeout=5).json()["throttled"])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            stop_group(proc, signal.SIGTERM, 10)
        _running.discard(self)


def test_target(base_dir: Path) -> S3Target:
    """What the tests run on: ``BACKLANE_TEST_S3_URL``'s server, else a private one started now."""
    url = os.environ.get("BACKLANE_TEST_S3_URL")
    if url:
        key = os.environ.get("BACKLANE_TEST_S3_ACCESS_KEY_ID")
        secret = os.environ.get("BACKLANE_TEST_S3_SECRET_ACCESS_KEY")
        if not (key and secret):
            raise MissingS3Server(
                "BACKLANE_TEST_S3_URL is set: set BACKLANE_TEST_S3_ACCESS_KEY_ID and "
                "BACKLANE_TEST_S3_SECRET_ACCESS_KEY too"
            )
        return ExternalS3(url, key, secret)
    server = S3Server(base_dir)
    server.start()
    return server
