"""The one home of backlane's configuration.

Every process-wide default lives here (broker, database, retries, the external
APIs, the worker), next to a comment saying what it means. A pipeline's own
section is declared beside the pipeline, as a :class:`PipelineSettings` subclass,
and read from ``BACKLANE_<NAME>__*`` by :mod:`backlane.core.config`. Values come from environment
variables with the ``BACKLANE_`` prefix and ``__`` between nesting levels, e.g.
``BACKLANE_ORDERS__TICK="*/2 * * * *"`` or ``BACKLANE_BROKER__URL=amqp://...``.

A bad value stops start-up with :class:`SettingsError`, one line naming the
environment variable to fix (and, unless it is a secret, the value it has);
secrets are :class:`~pydantic.SecretStr` and print as ``**********``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

import pydantic_settings
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backlane.errors import SettingsError

ENV_PREFIX = "BACKLANE_"
ENV_NESTED_DELIMITER = "__"

#: The fields of a cron spec: name, lowest and highest value.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _validate_cron(value: str) -> str:
    """Reject, naming the field, a cron spec periodiq would choke on only at the first tick
    (periodiq parses little: a minute of 61 or a step of 0 would crash the clock later)."""
    import pendulum
    from periodiq import CronSpec, expand_valid

    spec = value.strip()
    example = "e.g. '*/5 * * * *' (minute hour day-of-month month day-of-week)"
    if spec.startswith("@"):
        named = CronSpec._named_spec
        if spec not in named:
            raise ValueError(f"unknown cron shortcut {spec!r} (known: {', '.join(named)})")
        parts = named[spec].split()
    else:
        parts = spec.split()
    if len(parts) != 5:
        raise ValueError(f"a cron spec has 5 fields, this one {len(parts)}; {example}")
    for text, (name, low, high) in zip(parts, _CRON_FIELDS, strict=True):
        if name == "day of week":
            text = text.lower()
            for number, day in enumerate(_WEEKDAYS):
                text = text.replace(day, str(number))
        try:
            values = expand_valid(text, min=low, max=high)
        except ValueError:
            raise ValueError(f"{name} field {text!r} is not cron syntax; {example}") from None
        if not values:
            raise ValueError(f"{name} field {text!r} selects no {name}")
        wrong = [v for v in values if not low <= v <= high]
        if wrong:
            raise ValueError(f"{name} {wrong[0]} is out of range {low}-{high}")
    try:
        CronSpec.parse(spec).next_valid_date(pendulum.now())
    except Exception as exc:  # periodiq raises assorted errors for specs it cannot schedule
        raise ValueError(f"periodiq cannot schedule it ({exc.__class__.__name__}: {exc})") from None
    return value


def _validate_amqp_urls(value: SecretStr) -> SecretStr:
    for part in value.get_secret_value().split(";"):
        try:
            split = urlsplit(part.strip())
            split.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            split = None
        if split is None or split.scheme not in ("amqp", "amqps") or not split.hostname:
            raise ValueError("not an AMQP URL; expected amqp://user:password@host:5672/%2F (';' between several)")
        if any(v.strip().isdigit() and int(v) == 0 for v in parse_qs(split.query).get("heartbeat", [])):
            raise ValueError(
                "heartbeat=0 turns RabbitMQ's heartbeats off, so a frozen worker would keep its messages "
                "until TCP gives up; remove it (BACKLANE_BROKER__HEARTBEAT_SECONDS sets the interval)"
            )
    return value


def _validate_http_url(value: str) -> str:
    split = urlsplit(value)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ValueError("not an http(s) URL, e.g. http://127.0.0.1:15672")
    return value


def validate_database_url(value: SecretStr) -> SecretStr:
    from sqlalchemy.exc import ArgumentError

    from backlane.db.engine import parse_database_url

    expected = "expected sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname"
    try:
        backend = parse_database_url(value.get_secret_value()).get_backend_name()
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL; {expected}") from None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"backlane runs on SQLite or PostgreSQL, not {backend}; {expected}")
    return value


class Section(BaseModel):
    """Base of every settings section: unknown keys are typos, so they fail."""

    model_config = {"extra": "forbid"}


class BrokerSettings(Section):
    #: AMQP URL of RabbitMQ; several URLs separated by ';' for a cluster.
    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/%2F")
    #: Management API of the same node, read by `backlane status` and `dead-letters`.
    management_url: str = "http://127.0.0.1:15672"
    management_user: str = "guest"
    management_password: SecretStr = SecretStr("guest")
    #: "classic" for a single node, "quorum" for a replicated RabbitMQ cluster.
    queue_type: Literal["classic", "quorum"] = "classic"
    #: Messages a worker process holds per queue (RabbitMQ basic.qos); 0 = Dramatiq's 2 x threads.
    prefetch: int = Field(default=0, ge=0, le=65535)
    #: Messages a worker process holds from each delay queue (``<queue>.DQ``: retries and
    #: delayed messages, kept in memory until their time comes). Dramatiq's own default is
    #: 1,000 x threads per process, so a backlog of retries (an API down) would sit in worker
    #: memory by the tens of thousands; the rest waits in RabbitMQ. 0 = Dramatiq's default.
    delay_prefetch: int = Field(default=1000, ge=0, le=65535)
    #: Least time between two looks of a worker's delay-queue consumer for delayed messages whose
    #: time has come, milliseconds. A consumer holding delayed messages (retries, an order's status
    #: poll) looks when the earliest is due, but at most once per this; one holding none looks once
    #: per Dramatiq worker timeout (1,000 ms), as every other queue's consumer does. So a retry
    #: runs at most about this late, and an idle consumer thread wakes once a second.
    delay_poll_ms: int = Field(default=20, ge=1, le=1000)
    #: How long a process that is neither a worker nor the clock (an application publishing
    #: through backlane, the test suite) keeps trying while RabbitMQ is unreachable, seconds.
    #: Workers and the clock wait for ever; `backlane` commands use ``command_timeout``.
    reconnect_timeout: float = Field(default=120.0, gt=0, le=24 * 3600)
    #: How long a `backlane` command waits for RabbitMQ, its management API or PostgreSQL
    #: before it says which one is unreachable, seconds.
    command_timeout: float = Field(default=3.0, gt=0, le=600)
    #: Dead letters are kept this long in the .XQ queues, milliseconds (7 days).
    dead_letter_ttl_ms: int = Field(default=7 * 24 * 3600 * 1000, gt=0, le=2**31 - 1)
    #: Largest message body a worker reads, bytes: a larger delivery is dead-lettered as it came,
    #: unread (a publisher's mistake must not cost every worker its memory). 1 MiB by default.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    #: AMQP heartbeat asked for on every connection backlane opens, seconds (RabbitMQ's own default
    #: is 60). RabbitMQ closes a connection silent for one to two of these, and gives what its
    #: consumers held to the live ones: a frozen worker process (SIGSTOP, a long GC pause, a
    #: suspended VM) holds its messages for at most about twice this. A worker's consumer threads
    #: answer heartbeats however long an item runs. A URL's own ``heartbeat=`` wins for that URL
    #: (``heartbeat=0``, no heartbeats at all, is refused).
    heartbeat_seconds: int = Field(default=15, ge=1, le=600)

    _url = field_validator("url")(_validate_amqp_urls)
    _management_url = field_validator("management_url")(_validate_http_url)


class RetrySettings(Section):
    #: Dramatiq retries per message before the item is marked failed.
    max_retries: int = Field(default=10, ge=0)
    #: First backoff, milliseconds; doubles on each retry (with jitter).
    min_backoff_ms: int = Field(default=15_000, ge=1, le=24 * 3600_000)
    #: Backoff ceiling, milliseconds.
    max_backoff_ms: int = Field(default=15 * 60_000, ge=1, le=24 * 3600_000)
    #: Hard limit on one message's processing time, milliseconds.
    time_limit_ms: int = Field(default=10 * 60_000, ge=1000, le=24 * 3600_000)
    #: A message older than this is let go unworked, never dead-lettered (its row stays due
    #: and discover offers it again), ms. Requeued dead letters count from their requeue.
    max_age_ms: int = Field(default=24 * 3600_000, ge=1000, le=365 * 24 * 3600_000)
    #: The longest wait a server (Retry-After, "wait for X seconds"), a breaker or a pipeline may
    #: name, seconds: a longer one is cut to this (an hour), so no number from upstream holds an
    #: item, a rate limit or a delay-queue slot for longer.
    max_delay_seconds: float = Field(default=3600.0, ge=1, le=7 * 24 * 3600)
    #: Waits in a row ("wait for X seconds", "not ready yet", a breaker open) an item may make
    #: before it fails for good: a wait never counts as a try, but a server that answers "wait"
    #: for ever must not keep the item for ever.
    max_waits: int = Field(default=10_000, ge=1, le=1_000_000)


class DatabaseSettings(Section):
    #: SQLAlchemy URL. SQLite needs nothing installed; PostgreSQL for production.
    url: SecretStr = SecretStr("sqlite:///backlane.db")
    #: Connections per worker process (PostgreSQL).
    pool_size: int = Field(default=10, ge=1)
    #: Echo SQL to the log (debugging only).
    echo: bool = False
    #: PostgreSQL: give up opening a connection after this many seconds (a command uses
    #: broker.command_timeout when that is shorter).
    connect_timeout: int = Field(default=10, ge=1, le=600)

    _url = field_validator("url")(validate_database_url)


class PipelineSettings(Section):
    """What every pipeline's section has; retry fields left unset use ``retries``."""

    #: Off: the clock skips the pipeline and discover does nothing.
    enabled: bool = True
    #: Discover tick (cron, minute resolution).
    tick: str = "* * * * *"
    #: Most items one tick claims and enqueues; extra ones wait for the next tick.
    max_items: int = Field(default=500, ge=1)
    #: Failures per item before it is marked failed (default: retries.max_retries).
    max_retries: int | None = Field(default=None, ge=0)
    #: First backoff, ms (default: retries.min_backoff_ms).
    min_backoff_ms: int | None = Field(default=None, ge=1, le=24 * 3600_000)
    #: Backoff ceiling, ms (default: retries.max_backoff_ms).
    max_backoff_ms: int | None = Field(default=None, ge=1, le=24 * 3600_000)

    #: Fields that moved into the section from a section of their own, still read from their
    #: former variables (field -> former variable without ``BACKLANE_``: ``{"base_url":
    #: "ORDER_API__BASE_URL"}``) when the section's own variable is not set.
    env_aliases: ClassVar[Mapping[str, str]] = {}
    #: The fields an operator may change while the system runs (``backlane settings set``), as
    #: dotted paths, ``*`` for any key of a mapping (``limiters.*.calls``); a subclass adds its own.
    runtime_fields: ClassVar[tuple[str, ...]] = ("tick", "max_items", "max_retries", "min_backoff_ms", "max_backoff_ms")

    _cron = field_validator("tick")(_validate_cron)


class StorageSettings(Section):
    """Where stored objects (track audio, waveforms, images) live: a directory, or an S3-compatible
    object store (``kind = "s3"``, needs the ``s3`` extra: ``pip install 'backlane[s3]'``)."""

    #: ``directory`` (the default: files under ``root``) or ``s3`` (AWS S3, MinIO, Ceph RGW, R2...).
    kind: Literal["directory", "s3"] = "directory"
    #: Directory holding stored objects (track audio, waveforms) by key; relative to the working dir.
    root: str = "storage"
    #: S3: the endpoint URL, e.g. ``http://127.0.0.1:9000`` for MinIO or
    #: ``https://<account>.r2.cloudflarestorage.com``; unset: AWS S3 of ``region``.
    endpoint_url: str | None = None
    #: S3: the bucket holding every object; required with ``kind = "s3"``.
    bucket: str | None = Field(default=None, min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
    #: S3: the region requests are signed for (MinIO and most others take ``us-east-1``; R2 ``auto``).
    region: str = Field(default="us-east-1", min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")
    #: S3: the access key id; unset (with the secret) uses botocore's own chain (``AWS_*`` variables,
    #: an instance or pod role).
    access_key_id: SecretStr | None = None
    #: S3: the secret access key, never logged.
    secret_access_key: SecretStr | None = None
    #: S3: ``path`` (``endpoint/bucket/key``: MinIO, Ceph, most self-hosted), ``virtual``
    #: (``bucket.endpoint/key``) or ``auto`` (botocore decides: virtual on AWS).
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: S3: seconds to open a connection before the call fails as transient.
    connect_timeout: float = Field(default=5.0, gt=0, le=600)
    #: S3: seconds to wait for an answer before the call fails as transient.
    read_timeout: float = Field(default=30.0, gt=0, le=3600)
    #: S3: connections per process (the pool shared by a worker's threads).
    max_connections: int = Field(default=16, ge=1, le=1024)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else _validate_http_url(value)


class OAuthSettings(Section):
    """OAuth2 client credentials (RFC 6749 section 4.4) of one external API client, e.g. against an
    IdentityServer: ``BACKLANE_<PIPELINE>__OAUTH__TOKEN_URL``, ``__CLIENT_ID``, ``__CLIENT_SECRET``,
    ``__SCOPE`` (see docs/identity.md). Off while ``token_url`` is unset."""

    #: The token endpoint, e.g. ``https://identity.example.com/connect/token`` (unset: no OAuth).
    token_url: str | None = None
    #: The client id the identity server knows this client by.
    client_id: str | None = Field(default=None, min_length=1, max_length=200)
    #: Its secret (never logged, never shown in an error).
    client_secret: SecretStr | None = None
    #: Scopes asked for, space-separated (e.g. ``orders.api``); "" asks for the client's default.
    scope: str = Field(default="", max_length=2000, pattern=r"^[\x21\x23-\x5b\x5d-\x7e ]*$")
    #: How the client authenticates to the token endpoint: ``basic`` (HTTP Basic,
    #: client_secret_basic) or ``post`` (client_id and client_secret in the form, client_secret_post).
    auth_method: Literal["basic", "post"] = "basic"
    #: A token is renewed this long before it expires, seconds (at most half its lifetime).
    renew_margin_seconds: float = Field(default=60.0, ge=0, le=3600)
    #: Timeout of one token request, seconds.
    timeout: float = Field(default=10.0, gt=0, le=600)

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else _validate_http_url(value)

    @model_validator(mode="after")
    def _complete(self) -> OAuthSettings:
        if self.token_url is not None and (self.client_id is None or self.client_secret is None):
            raise ValueError("token_url is set: client_id and client_secret are needed too")
        return self

    @property
    def enabled(self) -> bool:
        return self.token_url is not None


class ApiSettings(Section):
    """The external HTTP API a pipeline calls, in the pipeline's own section (a settings class
    takes it as a base: ``class OrdersSettings(TableSettings, ApiSettings)``), so its variables
    are ``BACKLANE_<PIPELINE>__BASE_URL``, ``__API_KEY``, ``__TIMEOUT`` and ``__OAUTH__*``."""

    #: Base URL of the API (the simulator in the demo and the tests).
    base_url: str = "http://127.0.0.1:8085"
    #: Sent as a bearer token when set (a static key; for expiring tokens use ``oauth``).
    api_key: SecretStr | None = None
    #: Per-request timeout, seconds.
    timeout: float = Field(default=10.0, gt=0, le=3600)
    #: OAuth2 client credentials: a token from ``oauth.token_url`` instead of ``api_key``.
    oauth: OAuthSettings = OAuthSettings()

    @model_validator(mode="after")
    def _one_credential(self) -> ApiSettings:
        if self.api_key is not None and self.oauth.enabled:
            raise ValueError("set either api_key (a static token) or oauth.token_url, not both")
        return self


class WorkerSettings(Section):
    #: Port of the worker's /health and /metrics (Prometheus) endpoint; 0 turns both off. Several
    #: workers on one host: give each its own port (a worker finding its port taken says so in
    #: one line and runs on without an endpoint of its own).
    metrics_port: int = Field(default=9191, ge=0, le=65535)
    #: Address that endpoint listens on: loopback by default; 0.0.0.0 (all interfaces) in a
    #: container whose port is scraped from outside (compose.yaml sets it).
    metrics_host: str = "127.0.0.1"
    #: Where worker processes share their Prometheus counters (default: a per-port temp dir).
    metrics_dir: str | None = None
    #: /health is computed at most once per this many seconds, however many probes ask (one
    #: computation at a time, over one kept broker connection and the process's database pool).
    health_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    #: Threads answering /health and /metrics requests once read (one I/O thread reads them all).
    endpoint_threads: int = Field(default=8, ge=1, le=256)
    #: A client has this long to send its whole request (and to take the answer), seconds: a
    #: probe sends at once; a silent or trickling client is answered 408 and disconnected.
    endpoint_timeout: float = Field(default=3.0, gt=0, le=300)
    #: /metrics is read from the counters' files at most once per this many seconds.
    metrics_cache_seconds: float = Field(default=1.0, ge=0, le=300)
    #: Complete requests waiting for one of those threads (reading a request takes none: one
    #: I/O thread reads them all); beyond it: 503 {"status": "busy"} at once.
    endpoint_queue: int = Field(default=256, ge=1, le=10_000)
    #: Connections the endpoint holds at once; a new one beyond it closes the slowest reader.
    endpoint_max_connections: int = Field(default=512, ge=1, le=10_000)
    #: Largest request (line and headers) the endpoint reads, bytes; a larger one gets 431.
    endpoint_max_request_bytes: int = Field(default=8192, ge=1024, le=1024 * 1024)


def is_loopback_name(host: str) -> bool:
    return host.strip("[]").lower() in ("localhost", "127.0.0.1", "::1")


class DashboardSettings(Section):
    """`backlane dashboard`: the operators' web UI (see backlane/operations/dashboard)."""

    #: Address it listens on: loopback by default. Any other address needs ``password``
    #: (the dashboard refuses to start without one).
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    #: HTTP Basic login: this user and ``password`` (compared in constant time). Unset:
    #: no login, allowed on a loopback address only.
    user: str = Field(default="backlane", min_length=1)
    password: SecretStr | None = None
    #: Hide every action (requeue, purge, trigger); a POST is refused.
    read_only: bool = False
    #: The RabbitMQ management API (queue depths) and the broker check are read at most once
    #: per this many seconds, however many browsers are open.
    management_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    #: Open pages refresh themselves this often, seconds (0: never).
    refresh_seconds: float = Field(default=5.0, ge=0, le=3600)
    #: Counts of rows are exact up to this many; above it (PostgreSQL) the planner's estimate is
    #: shown, marked ≈, so a page over millions of rows stays fast. `backlane status` bounds its
    #: counts by the same limit (`backlane status --exact` counts every row).
    exact_count_limit: int = Field(default=100_000, ge=1)
    #: Rows per page of a pipeline's items.
    page_size: int = Field(default=50, ge=1, le=1000)
    #: Dead letters shown per queue (read without consuming them).
    dead_letter_limit: int = Field(default=100, ge=1, le=10_000)
    #: Workers' /health URLs, comma-separated; unset: this host's worker
    #: (http://127.0.0.1:<worker.metrics_port>/health) when its port is not 0.
    workers: str | None = None
    #: Host names the dashboard answers to besides loopback's (localhost, 127.0.0.1, [::1]),
    #: comma-separated, e.g. ``ops.example.com``: a request naming another host is refused
    #: before anything else (a page that DNS-rebinds its own name to this host gets nothing).
    #: ``*`` answers any name: only behind a proxy that checks ``Host`` itself.
    allowed_hosts: str = ""

    def allowed_host_names(self) -> tuple[str, ...]:
        names = [n.strip().lower().strip("[]") for n in self.allowed_hosts.split(",") if n.strip()]
        if self.host not in ("0.0.0.0", "::", "") and not is_loopback_name(self.host):
            names.append(self.host.strip("[]").lower())  # the address it listens on names it too
        return tuple(names)


class MessageSettings(Section):
    """What a worker honours in a message (see backlane/messaging/signing.py).

    Every message backlane publishes with options (retries, delays, clock ticks, requeued dead
    letters) is signed with HMAC-SHA256; a worker honours backlane's own options only on a
    message whose signature it can check, so every process of a deployment (workers, the clock,
    the CLI) must sign with the same key."""

    #: The signing key (``BACKLANE_MESSAGES__SIGNING_KEY``, at least 16 characters). Unset: derived
    #: from ``database.url``, which every backlane process of a deployment shares without further
    #: configuration and the services publishing to RabbitMQ do not hold. Set it when the database
    #: URL carries no secret (a SQLite path, a password-less login) or is known outside backlane;
    #: changing it (or the database URL) refuses messages signed before, e.g. retries in .DQ.
    signing_key: SecretStr | None = None
    #: Turn on Dramatiq's Pipelines and Callbacks middleware (``pipe_target``, ``on_success``,
    #: ``on_failure``). No backlane pipeline uses them; off, no message can start a second one.
    dramatiq_composition: bool = False
    #: Publish MassTransit's ``Fault<T>`` (``MassTransit:Fault--Ns:Type--``, or the envelope's fault
    #: or response address) once for each message that came in MassTransit's format and failed for
    #: good, so the .NET publisher hears of it (docs/masstransit-faults.md). Off: only the ``.XQ``.
    masstransit_faults: bool = True

    @field_validator("signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or unset, to derive it from the database URL)")
        return value


class TracingSettings(Section):
    """OpenTelemetry tracing of every message, HTTP call and SQL statement (see docs/tracing.md).

    Needs the ``tracing`` extra (``pip install 'backlane[tracing]'``). The SDK's own ``OTEL_*``
    variables are honoured (``OTEL_EXPORTER_OTLP_*``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
    ``OTEL_RESOURCE_ATTRIBUTES``); the two settings below, when set, win over theirs."""

    #: Off: no span is made, the middleware is not installed and OpenTelemetry is not imported.
    enabled: bool = False
    #: The OTLP/HTTP traces endpoint, e.g. ``http://otel-collector:4318/v1/traces``. Unset: the
    #: SDK's (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, else
    #: http://localhost:4318/v1/traces).
    endpoint: str | None = None
    #: The ``service.name`` of every span. Unset: ``OTEL_SERVICE_NAME``, else "backlane".
    service_name: str | None = None


class ControlSettings(Section):
    """What operators change while the system runs (pauses, runtime settings, the audit trail;
    see docs/operating.md, "Changing a running system")."""

    #: How often a worker and the clock read the pauses and runtime settings, seconds: a pause
    #: or a change takes effect on every process within about this long.
    refresh_seconds: float = Field(default=2.0, ge=0.1, le=300, allow_inf_nan=False)
    #: A queued item of a paused pipeline is looked at again after this long at most, seconds
    #: (the wait grows from 1 s to it): after a resume, every item waiting runs within about this long.
    paused_recheck_seconds: float = Field(default=15.0, ge=1, le=3600, allow_inf_nan=False)
    #: A pause older than this is reported (status, /health, the dashboard) as one that may be
    #: forgotten, hours; a pause is never by itself unhealthy.
    pause_warn_hours: float = Field(default=24.0, gt=0, le=366 * 24, allow_inf_nan=False)
    #: Operator actions and catalog refresh runs are kept this long, days.
    audit_keep_days: float = Field(default=400.0, gt=0, le=100 * 366, allow_inf_nan=False)


class Settings(BaseSettings):
    """Everything backlane reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="ignore",
        case_sensitive=False,
    )

    broker: BrokerSettings = BrokerSettings()
    retries: RetrySettings = RetrySettings()
    database: DatabaseSettings = DatabaseSettings()
    worker: WorkerSettings = WorkerSettings()
    storage: StorageSettings = StorageSettings()
    dashboard: DashboardSettings = DashboardSettings()
    messages: MessageSettings = MessageSettings()
    tracing: TracingSettings = TracingSettings()
    controls: ControlSettings = ControlSettings()
    #: The application: module(s) whose import registers the pipelines (what `dramatiq` is given).
    app: str = "scheduler"
    #: Logging level of backlane's loggers.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Format of every log line of the worker, the clock and the commands: ``text`` (as Dramatiq
    #: writes them) or ``json`` (one object per line: time, level, logger, message, and an item's
    #: pipeline, item, outcome, attempt and duration_ms; see docs/operating.md, "Logs").
    log_format: Literal["text", "json"] = "text"
    #: Seconds in which a warning or error of one kind (logger, message, exception) is written
    #: once: its repeats are counted and the next one written says how many were not shown, so
    #: an outage is a line per kind per interval, not a traceback per attempt. 0 writes every one.
    #: An item's outcome line is never held back.
    log_repeat_seconds: float = Field(default=60.0, ge=0, le=24 * 3600, allow_inf_nan=False)
    #: Write httpx's line for every HTTP request ("HTTP Request: POST ... 201 Created"). Off by
    #: default: an item's outcome line already says how its calls ended, and two lines per order
    #: were most of a busy worker's log. Its warnings and errors are written either way; turn it
    #: on to follow an API's calls.
    log_http_requests: bool = False


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable that sets the value at ``location``."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part) for part in location).upper()


#: Words in a variable's name that mean its value must never be shown.
_SECRET_WORDS = ("URL", "PASSWORD", "KEY", "SECRET", "TOKEN")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_validation(exc: ValidationError, location: tuple[str | int, ...] = ()) -> list[str]:
    """One "BACKLANE_X: what is wrong (it is 'value')" per error; secret values never shown."""
    problems = []
    for err in exc.errors():
        name = env_name((*location, *err["loc"]))
        if err["type"] == "extra_forbidden":
            problems.append(f"{name} is not a setting (a typo? every setting is in backlane/settings.py)")
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        secret = any(word in name for word in _SECRET_WORDS)
        given = "" if secret or err["type"] == "missing" else f" (it is {_shown(err.get('input'))})"
        problems.append(f"{name}: {message}{given}")
    return problems


def settings_error(problems: list[str]) -> SettingsError:
    what = "invalid setting" if len(problems) == 1 else f"{len(problems)} invalid settings"
    return SettingsError(f"{what}: " + "; ".join(problems), problems)


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(describe_validation(exc)) from None
    except pydantic_settings.SettingsError as exc:  # e.g. a value that should be JSON is not
        raise settings_error([f"{exc} (a BACKLANE_* variable that holds JSON?)"]) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
