"""Dramatiq, pika and periodiq internals backlane relies on, checked so an upgrade fails here, loudly,
rather than in production. pyproject.toml bounds the three at the next untested minor; the
installed versions are the tested ones, and :func:`test_the_installed_versions_are_inside_the_declared_bounds`
holds the two together.

Private names (``_x``) of those libraries that backlane reads, imports or overrides are listed
in :data:`PRIVATE_USES`, each with the test that pins it; :func:`test_every_private_use_is_listed`
reads backlane/, scheduler/, devtools/ and actors/ and fails on one missing from the list (or
listed but gone). Public but undocumented parts (a broker's ``state``/``channels``/``connections``,
``queues_pending``, the worker's prefetch globals, periodiq's ``Scheduler`` looked up at start, the
copy of ``Broker.emit_before``/``emit_after``) have a pin each below too.

A failing pin names the backlane file that relies on what changed and what to check there.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
import textwrap
import threading
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dramatiq
import dramatiq.worker
import periodiq
import pika
import pika.connection
import pytest
from dramatiq.broker import Broker, MessageProxy
from dramatiq.brokers import rabbitmq
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware, MiddlewareError
from packaging.requirements import Requirement
from packaging.version import Version
from pika.adapters import base_connection, blocking_connection
from pika.adapters.utils import io_services_utils

from backlane.core import ticks
from backlane.messaging import links
from backlane.messaging.broker import SCHEDULED_AT, BacklaneBroker
from backlane.messaging.broker_faults import QuietConsumerRestarts
from backlane.messaging.deadletter import DeadLetteringConsumer, failure_of

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("dramatiq", "pika", "periodiq")
#: Where backlane's code is read for private uses of the libraries.
SCANNED = ("backlane", "scheduler", "devtools", "actors")
#: Underscored names that are public API (namedtuple's, ``os._exit``), whoever defines them.
NOT_PRIVATE = frozenset({"_replace", "_asdict", "_fields", "_make", "_mapping", "_exit"})

_CONSUMER = "test_the_private_rabbitmq_consumer_still_has_what_the_dead_lettering_consumer_uses"
_PUBLISHER = "test_pika_channel_internals_used_by_the_batch_publisher_are_there"
_DECLARE = "test_dramatiq_declares_a_queue_through_the_methods_the_broker_overrides"

#: (file, private name of dramatiq, pika or periodiq) -> the test below that pins it.
PRIVATE_USES: dict[tuple[str, str], str] = {
    ("backlane/messaging/deadletter.py", "_RabbitmqConsumer"): _CONSUMER,
    ("backlane/messaging/deadletter.py", "_RabbitmqMessage"): _CONSUMER,
    ("backlane/messaging/deadletter.py", "_tag"): _CONSUMER,
    ("backlane/messaging/deadletter.py", "_exception"): "test_a_message_keeps_its_exception_where_failure_of_reads_it",
    ("backlane/messaging/publishing.py", "_impl"): _PUBLISHER,
    ("backlane/messaging/publishing.py", "_transport"): _PUBLISHER,
    ("backlane/messaging/publishing.py", "_tx_buffers"): _PUBLISHER,
    ("backlane/messaging/links.py", "_impl"): "test_pika_connection_knows_its_node_and_server_in_its_impl",
    ("backlane/messaging/broker.py", "_build_queue_arguments"): _DECLARE,
    ("backlane/messaging/broker.py", "_declare_queue"): _DECLARE,
    ("backlane/messaging/broker.py", "_declare_dq_queue"): _DECLARE,
    ("backlane/messaging/broker.py", "_declare_xq_queue"): _DECLARE,
    ("backlane/settings.py", "_named_spec"): "test_periodiqs_named_cron_shortcuts_are_where_settings_reads_them",
}


def _relies(path: str, what: str) -> str:
    return f"{path} relies on this: {what}"


# -- the list ---------------------------------------------------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name[1:2].isalpha() and name not in NOT_PRIVATE


def _library_private_names() -> set[str]:
    """Every underscored identifier in the three libraries' sources."""
    names: set[str] = set()
    for library in LIBRARIES:
        spec = importlib.util.find_spec(library)
        assert spec is not None and spec.origin is not None
        for source in Path(spec.origin).parent.rglob("*.py"):
            text = source.read_text(encoding="utf-8", errors="replace")
            names.update(n for n in re.findall(r"\b(_[A-Za-z]\w*)\b", text) if _private(n))
    return names


def _own_names(tree: ast.Module) -> set[str]:
    """Private names a file's classes define for themselves (methods, ``self._x = ...``, class attributes)."""
    own: set[str] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
    return own


def _uses_in(tree: ast.Module, library_names: set[str]) -> set[str]:
    """Library-private names a file reads (``x._name``, ``getattr(x, "_name")``) or imports."""
    own, found = _own_names(tree), set[str]()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in library_names:
            on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not (on_self and node.attr in own):
                found.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2:
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
            by_name = node.func.id in ("getattr", "hasattr", "setattr", "delattr") and isinstance(name, str)
            if by_name and isinstance(name, str) and _private(name) and name in library_names:
                found.add(name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            found.update(alias.name for alias in node.names if _private(alias.name))
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _overrides_in(path: Path, tree: ast.Module) -> set[str]:
    """Private methods a class of the file overrides on a dramatiq, pika or periodiq base."""
    if not any(isinstance(n, ast.ClassDef) and n.bases for n in tree.body):
        return set()
    module = importlib.import_module(_module_name(path))
    found: set[str] = set()
    for cls in (v for v in vars(module).values() if inspect.isclass(v) and v.__module__ == module.__name__):
        library_bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] in LIBRARIES]
        found.update(n for n in vars(cls) if _private(n) and any(hasattr(b, n) for b in library_bases))
    return found


def _private_uses() -> set[tuple[str, str]]:
    library_names = _library_private_names()
    uses: set[tuple[str, str]] = set()
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if not any(library in text for library in LIBRARIES) and "_impl" not in text:
                continue
            tree = ast.parse(text)
            relative = path.relative_to(ROOT).as_posix()
            names = _uses_in(tree, library_names)
            if top == "backlane" and re.search(r"^(from|import) (dramatiq|pika|periodiq)", text, re.M):
                names |= _overrides_in(path, tree)
            uses.update((relative, name) for name in names)
    return uses


def test_every_private_use_is_listed() -> None:
    found = _private_uses()
    unlisted = sorted(found - PRIVATE_USES.keys())
    gone = sorted(PRIVATE_USES.keys() - found)
    assert not unlisted, (
        f"private dramatiq/pika/periodiq names used but not pinned: {unlisted}. Use a public API instead, "
        "or add each to PRIVATE_USES in tests/unit/test_pinned_internals.py with a test that pins it"
    )
    assert not gone, f"listed in PRIVATE_USES but no longer used (remove them, and their pins if unused): {gone}"


def test_the_list_finds_what_it_looks_for() -> None:
    tree = ast.parse(
        "from dramatiq.brokers.rabbitmq import _RabbitmqConsumer\n"
        "class C:\n    def __init__(self):\n        self._mine = 1\n"
        "    def f(self, conn):\n        return conn._impl, getattr(conn, '_transport'), self._mine\n"
    )
    assert _uses_in(tree, {"_impl", "_transport", "_mine", "_RabbitmqConsumer"}) == {
        "_RabbitmqConsumer",
        "_impl",
        "_transport",
    }


def test_every_listed_use_has_its_pin() -> None:
    missing = {test for test in PRIVATE_USES.values() if not callable(globals().get(test))}
    assert not missing, f"PRIVATE_USES names pins that do not exist: {sorted(missing)}"


def test_the_installed_versions_are_inside_the_declared_bounds() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = {Requirement(d).name.lower(): Requirement(d) for d in declared}
    for library in LIBRARIES:
        requirement = requirements[library]
        uppers = [s for s in requirement.specifier if s.operator in ("<", "<=")]
        assert uppers, f"pyproject.toml: {requirement} has no upper bound; bound it at the next untested minor"
        installed = Version(importlib.metadata.version(library))
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{library} {installed} is installed, outside pyproject.toml's {requirement}: run this file's pins "
            "on it, then move the bound to the next minor after the one tested"
        )


# -- dramatiq: the RabbitMQ consumer ----------------------------------------------------------


def test_the_private_rabbitmq_consumer_still_has_what_the_dead_lettering_consumer_uses() -> None:
    where = _relies("backlane/messaging/deadletter.py", "DeadLetteringConsumer subclasses _RabbitmqConsumer")
    consumer = rabbitmq._RabbitmqConsumer
    assert issubclass(DeadLetteringConsumer, consumer)
    init = inspect.signature(consumer.__init__).parameters
    assert {"broker", "queue_name", "prefetch", "timeout"} <= set(init), f"{init}; {where}"
    source = inspect.getsource(consumer)
    # __next__ reads these; nack settles by tag the way we copy it.
    for name in ("self.iterator", "self.known_tags", "self.channel", "self.connection", "self.queue_name"):
        assert name in source, f"_RabbitmqConsumer no longer has {name}; {where}"
    assert "message._tag" in inspect.getsource(consumer.nack), f"nack settles by another tag; {where}"
    assert "add_callback_threadsafe" in source, where
    assert list(inspect.signature(rabbitmq._RabbitmqMessage.__init__).parameters) == [
        "self",
        "redelivered",
        "tag",
        "message",
    ], where
    assert rabbitmq._RabbitmqMessage(False, 7, Message("q", "a", (), {}, {}))._tag == 7, where
    assert isinstance(inspect.getattr_static(rabbitmq.RabbitmqBroker, "consumer_class"), property), _relies(
        "backlane/messaging/broker.py", "BacklaneBroker.consumer_class (a property) picks its consumer"
    )
    consume = inspect.getsource(rabbitmq.RabbitmqBroker.consume)
    assert "self.consumer_class(self, queue_name, prefetch, timeout)" in consume, where
    # A delay queue's consumer replaces the iterator __init__ made: pika's consume() must be a
    # generator function, which subscribes only at its first next(), never in __init__.
    looks = _relies("backlane/messaging/consumer.py", "a delay queue's consumer replaces self.iterator")
    assert "self.iterator = self.channel.consume(" in inspect.getsource(consumer.__init__), looks
    assert inspect.isgeneratorfunction(blocking_connection.BlockingChannel.consume), looks
    assert "basic_consume" not in inspect.getsource(consumer.__init__), looks


# -- dramatiq: the broker's queues, connections and signals ------------------------------------


class _Channel:
    """A channel that records what is declared on it."""

    def __init__(self) -> None:
        self.declared: list[tuple[str, dict[str, Any]]] = []
        self.is_open = True
        self.connection = SimpleNamespace(_impl=SimpleNamespace(server_properties={"version": b"3.13.7"}))

    def queue_declare(self, queue: str, durable: bool = False, arguments: Any = None, passive: bool = False) -> str:
        self.declared.append((queue, dict(arguments or {})))
        return "ok"

    def close(self) -> None:
        self.is_open = False


def test_dramatiq_declares_a_queue_through_the_methods_the_broker_overrides() -> None:
    where = _relies(
        "backlane/messaging/broker.py",
        "BacklaneBroker overrides _build_queue_arguments and _declare_(|dq_|xq_)queue(self, queue_name), "
        "which RabbitmqBroker._ensure_queue calls for each pending queue",
    )
    for name in ("_build_queue_arguments", "_declare_queue", "_declare_dq_queue", "_declare_xq_queue"):
        theirs = list(inspect.signature(getattr(rabbitmq.RabbitmqBroker, name)).parameters)
        assert theirs == ["self", "queue_name"], f"RabbitmqBroker.{name}{theirs}; {where}"
        assert list(inspect.signature(getattr(BacklaneBroker, name)).parameters) == theirs, where
    ensure = inspect.getsource(rabbitmq.RabbitmqBroker._ensure_queue)
    calls = [f"self._declare{part}queue(canonical_queue_name)" for part in ("_", "_dq_", "_xq_")]
    assert all(call in ensure for call in calls), f"_ensure_queue declares otherwise; {where}"
    assert "in self.queues_pending" in ensure, _relies(
        "backlane/messaging/broker.py and deadletter.py", "adding to queues_pending makes the next ensure declare"
    )
    # A real declaration: dramatiq's declare_queue, through the overrides, on this thread's channel.
    broker = BacklaneBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[], dead_letter_ttl_ms=1000)
    channel = _Channel()
    broker.state.channel = channel
    broker.declare_queue("orders", ensure=True)
    assert [name for name, _ in channel.declared] == ["orders", "orders.DQ", "orders.XQ"], where
    assert channel.declared[0][1]["x-dead-letter-routing-key"] == "orders.XQ", where
    assert channel.declared[2][1] == {"x-message-ttl": 1000}, where
    assert "orders" in broker.queues and not broker.queues_pending, where


def test_the_broker_keeps_each_threads_connection_where_links_forgets_it() -> None:
    where = _relies(
        "backlane/messaging/links.py",
        "Links.forget drops broker.state.channel/.connection and discards them from broker.channels/.connections",
    )
    connection_source = inspect.getsource(inspect.getattr_static(rabbitmq.RabbitmqBroker, "connection").fget)
    channel_source = inspect.getsource(inspect.getattr_static(rabbitmq.RabbitmqBroker, "channel").fget)
    assert 'getattr(self.state, "connection", None)' in connection_source, where
    assert "self.connections.add(connection)" in connection_source, where
    assert "pika.BlockingConnection(parameters=self.parameters)" in connection_source, _relies(
        "backlane/messaging/links.py", "Links reorders broker.parameters, which each new connection goes through"
    )
    assert 'getattr(self.state, "channel", None)' in channel_source and "self.channels.add(channel)" in channel_source
    broker = BacklaneBroker(url="amqp://guest:guest@10.0.0.1:1/%2F;amqp://guest:guest@10.0.0.2:1/%2F", middleware=[])
    assert isinstance(broker.state, threading.local), where
    assert isinstance(broker.parameters, list) and len(broker.parameters) == 2, where
    channel, connection = _Channel(), _Channel()
    broker.state.channel, broker.state.connection = channel, connection
    broker.channels.add(channel)  # type: ignore[arg-type]
    broker.connections.add(connection)  # type: ignore[arg-type]
    assert broker.channel is channel and broker.connection is connection, where
    broker.links.forget()
    assert not broker.channels and not broker.connections, where
    assert getattr(broker.state, "channel", None) is None and not channel.is_open and not connection.is_open, where


def test_the_copied_middleware_signals_match_dramatiqs() -> None:
    where = _relies(
        "backlane/messaging/signals.py",
        "Signals copies Broker.emit_before/emit_after (order, MiddlewareError raised, other errors logged); "
        "compare the new code with the copy, update it, then the fingerprints here",
    )
    fingerprints = {
        name: hashlib.sha256(textwrap.dedent(inspect.getsource(getattr(Broker, name))).encode()).hexdigest()[:16]
        for name in ("emit_before", "emit_after")
    }
    assert fingerprints == {"emit_before": "ed466cf18c1273ac", "emit_after": "ce7f062f618b1c95"}, where

    def run(broker: Broker, seen: list[str]) -> list[str]:
        broker.emit_before("process_message", "m")
        broker.emit_after("process_message", "m", result=None, exception=None)
        broker.add_middleware(_Refusing(seen))
        with pytest.raises(MiddlewareError):
            broker.emit_before("process_message", "m")
        return seen

    def middleware(seen: list[str]) -> list[Middleware]:
        return [_Recording(seen, "a"), _Failing(seen), Middleware(), _Recording(seen, "b")]

    ours: list[str] = []
    theirs: list[str] = []
    backlane = BacklaneBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=middleware(ours))
    backlane.middleware[:] = [m for m in backlane.middleware if type(m).__module__ == __name__ or type(m) is Middleware]
    logging.disable(logging.CRITICAL)
    try:
        assert run(backlane, ours) == run(StubBroker(middleware=middleware(theirs)), theirs), where
    finally:
        logging.disable(logging.NOTSET)
    assert ours[:4] == ["a.before", "failing.before", "b.before", "b.after"], where


class _Recording(Middleware):
    def __init__(self, seen: list[str], name: str) -> None:
        self.seen, self.name = seen, name

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.seen.append(f"{self.name}.before")

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        self.seen.append(f"{self.name}.after")


class _Failing(Middleware):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.seen.append("failing.before")
        raise RuntimeError("logged and passed over")

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        self.seen.append("failing.after")
        raise RuntimeError("logged and passed over")


class _Refusing(Middleware):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.seen.append("refusing.before")
        raise MiddlewareError("stops the message")


def test_a_message_keeps_its_exception_where_failure_of_reads_it() -> None:
    where = _relies("backlane/messaging/deadletter.py", "failure_of reads MessageProxy._exception for the reason")
    assert "self._exception = exception" in inspect.getsource(MessageProxy.stuff_exception), where
    assert "message.stuff_exception(e)" in inspect.getsource(dramatiq.worker), where
    proxy = MessageProxy(Message("orders", "place", (), {}, {}))
    assert failure_of(proxy) == ("rejected", "rejected by the worker"), where
    proxy.stuff_exception(ValueError("no such order"))
    assert failure_of(proxy) == ("error", "ValueError: no such order"), where


def test_the_workers_knobs_and_log_lines_backlane_uses_are_there() -> None:
    source = inspect.getsource(dramatiq.worker)
    prefetch = _relies("backlane/app.py", "_apply_worker_settings sets dramatiq.worker.(DELAY_)QUEUE_PREFETCH")
    assert isinstance(dramatiq.worker.QUEUE_PREFETCH, int), prefetch
    assert isinstance(dramatiq.worker.DELAY_QUEUE_PREFETCH, int), prefetch
    init = inspect.getsource(dramatiq.worker.Worker.__init__)
    assert "QUEUE_PREFETCH or" in init and "DELAY_QUEUE_PREFETCH or" in init, prefetch
    queues = _relies("backlane/messaging/boot.py", "ServiceLifecycle reads worker.consumer_whitelist (--queues)")
    worker = dramatiq.Worker(StubBroker(middleware=[]), queues={"orders"}, worker_threads=1)
    assert worker.consumer_whitelist == {"orders"}, queues
    quiet = _relies(
        "backlane/messaging/broker.py",
        "consume() filters the logger dramatiq.worker.ConsumerThread(<queue>) for QuietConsumerRestarts.PREFIXES",
    )
    assert 'get_logger(__name__, "ConsumerThread(%s)" % queue_name)' in source, quiet
    for prefix in QuietConsumerRestarts.PREFIXES:
        assert f'"{prefix}' in source, f"{prefix!r} not logged any more; {quiet}"


# -- pika ---------------------------------------------------------------------------------------


def test_pika_channel_internals_used_by_the_batch_publisher_are_there() -> None:
    where = _relies(
        "backlane/messaging/publishing.py", "BatchPublisher publishes on channel._impl, coalesces _tx_buffers"
    )
    assert pika.__version__.split(".")[0] == "1"
    channel_init = inspect.getsource(blocking_connection.BlockingChannel.__init__)
    assert "self._impl" in channel_init, f"BlockingChannel no longer wraps an async channel in _impl; {where}"
    async_channel = pika.channel.Channel
    assert {"ack_nack_callback", "callback"} <= set(inspect.signature(async_channel.confirm_delivery).parameters)
    assert {"exchange", "routing_key", "body", "properties", "mandatory"} <= set(
        inspect.signature(async_channel.basic_publish).parameters
    ), where
    assert hasattr(async_channel, "add_on_return_callback"), where
    assert "self._impl" in inspect.getsource(blocking_connection.BlockingConnection.__init__), where
    assert "self._transport" in inspect.getsource(base_connection.BaseConnection), where
    transport_source = inspect.getsource(io_services_utils)
    assert "self._tx_buffers: collections.deque[bytes] = collections.deque()" in transport_source, where


def test_pika_connection_knows_its_node_and_server_in_its_impl() -> None:
    where = _relies(
        "backlane/messaging/links.py",
        "node_of reads connection._impl.params (demote), server_major channel.connection._impl.server_properties",
    )
    assert "self._impl = self._create_connection(" in inspect.getsource(
        blocking_connection.BlockingConnection.__init__
    ), where
    assert isinstance(inspect.getattr_static(blocking_connection.BlockingChannel, "connection"), property), where
    connection_source = inspect.getsource(pika.connection.Connection)
    assert "self.params = copy.deepcopy(parameters)" in connection_source, where
    assert "self.server_properties" in connection_source, where
    params = pika.URLParameters("amqp://guest:guest@10.0.0.9:5673/vh")
    assert links.node_of(SimpleNamespace(_impl=SimpleNamespace(params=params))) is params
    assert (params.host, params.port, params.virtual_host) == ("10.0.0.9", 5673, "vh"), where
    impl = SimpleNamespace(server_properties={"version": b"4.0.5"})
    assert links.server_major(SimpleNamespace(connection=SimpleNamespace(_impl=impl))) == 4, where


# -- periodiq -----------------------------------------------------------------------------------


def test_periodiqs_named_cron_shortcuts_are_where_settings_reads_them() -> None:
    where = _relies("backlane/settings.py", "_validate_cron lists and expands CronSpec._named_spec ('@hourly' ...)")
    named = periodiq.CronSpec._named_spec
    assert isinstance(named, dict) and "@hourly" in named, where
    assert all(isinstance(v, str) and len(v.split()) == 5 for v in named.values()), where
    assert "cls._named_spec[fields]" in inspect.getsource(periodiq.CronSpec.parse), where
    from backlane.settings import _validate_cron

    assert _validate_cron("@daily") == "@daily"
    with pytest.raises(ValueError, match="unknown cron shortcut '@fortnightly'"):
        _validate_cron("@fortnightly")


def test_periodiq_starts_the_scheduler_backlane_puts_in_its_place() -> None:
    where = _relies(
        "backlane/core/ticks.py",
        "install() sets periodiq.Scheduler = OutageProofScheduler, which overrides send_actors(actors, now)",
    )
    assert "Scheduler(actors=periodic_actors)" in inspect.getsource(periodiq.main), where
    assert list(inspect.signature(periodiq.Scheduler.__init__).parameters) == ["self", "actors"], where
    assert list(inspect.signature(periodiq.Scheduler.send_actors).parameters) == ["self", "actors", "now"], where
    assert "self.send_actors(" in inspect.getsource(periodiq.Scheduler.schedule), where
    skips = inspect.getsource(periodiq.PeriodiqMiddleware.before_process_message)
    assert f"message.options['{SCHEDULED_AT}']" in skips, _relies(
        "backlane/messaging/broker.py", "a tick sent again is restamped in options['scheduled_at']"
    )
    original = periodiq.Scheduler
    try:
        ticks.install()
        assert periodiq.Scheduler is ticks.OutageProofScheduler, where
    finally:
        periodiq.Scheduler = original
    # A real send through periodiq's own send_actors.
    broker = StubBroker(middleware=[periodiq.PeriodiqMiddleware()])
    tick = dramatiq.actor(actor_name="tick", broker=broker, periodic=periodiq.cron("* * * * *"))(_tick)
    scheduler = ticks.OutageProofScheduler(actors=[tick])
    scheduler.send_actors([tick], scheduler.now())
    (sent,) = broker.queues["default"].queue
    assert SCHEDULED_AT in Message.decode(sent).options, where


def _tick() -> None:
    pass
