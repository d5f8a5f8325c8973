"""The clock (``periodiq scheduler``) through a broker outage: it waits, then runs what it missed.

periodiq sends each due tick from its main loop; with RabbitMQ away that send
failed after the broker's reconnect timeout and the exception ended the
process. :class:`OutageProofScheduler` replaces periodiq's scheduler (periodiq
builds ``periodiq.Scheduler`` after importing our ``scheduler`` module, which
calls :func:`install`) and:

* checks at start that RabbitMQ accepts our credentials: a refusal is one line
  naming ``BACKLANE_BROKER__URL`` and exit status 78, not a retry loop;
* makes its broker *serve*: a tick is sent however long RabbitMQ is away
  (capped backoff, one warning per outage), stamped with the time it leaves so
  the worker's PeriodiqMiddleware does not skip it as stale;
* after an outage, sends once every actor whose tick fell while it was waiting
  (periodiq alone only looks at the minute it wakes up in);
* between ticks, checks every :data:`ACCESS_CHECK_SECONDS` that RabbitMQ still accepts its
  credentials (:class:`AccessWatch`): a rotated password ends the clock within seconds, with
  the same one line and status 78 as at start-up, as the workers do, instead of at its next
  tick, up to a minute (or a whole schedule's period) later.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta
from typing import Any

import pendulum
import periodiq
from periodiq import cron

from backlane.core import startup
from backlane.core.runtime import get_runtime

logger = logging.getLogger("backlane.clock")

#: A catch-up looks back at most this far (periodiq's resolution is one minute).
CATCH_UP_LIMIT = timedelta(days=7)


class OutageProofScheduler(periodiq.Scheduler):  # type: ignore[misc]
    def __init__(self, actors: list[Any]) -> None:
        super().__init__(actors=actors)
        self._last: Any = None
        #: When each actor's latest tick actually left (after an outage: long after it was due).
        self._sent: dict[str, Any] = {}
        self.now = pendulum.now  # tests pass their own time
        brokers = {id(a.broker): a.broker for a in actors}
        for broker in brokers.values():
            if hasattr(broker, "serve"):
                broker.serve()
                broker.check_access()
        #: The pipeline behind each discover actor, and the tick its schedule was built from.
        self._pipelines = _pipelines_of(actors)
        self._ticks = {name: reg.context().config.tick for name, reg in self._pipelines.items()}
        if startup.process_role() == startup.CLOCK:
            # Every pipeline's section was read when the discover actors were declared.
            runtime = get_runtime()
            database = runtime.settings.database
            startup.check_database(database.url.get_secret_value(), database.connect_timeout, startup.CLOCK)
            for broker in brokers.values():
                if hasattr(broker, "faults"):
                    AccessWatch(broker).start()
            TickWatch(self, runtime.settings.controls.refresh_seconds).start()

    def refresh_ticks(self) -> bool:
        """Apply each pipeline's tick as it is now (an operator's ``backlane settings set NAME tick
        SPEC`` included) to its actor's schedule; whether any changed."""
        changed = False
        for name, registered in self._pipelines.items():
            tick = registered.context().config.tick
            if tick == self._ticks.get(name):
                continue
            actor = next(a for a in self.actors if a.actor_name == name)
            try:
                actor.options["periodic"] = cron(tick)
            except Exception as exc:  # validated when set; a spec this periodiq refuses keeps the old one
                logger.warning("%s: tick %r not applied (%s); it keeps %r", name, tick, exc, self._ticks.get(name))
                self._ticks[name] = tick
                continue
            logger.info("%s ticks on %r from now on (was %r)", name, tick, self._ticks.get(name))
            self._ticks[name] = tick
            changed = True
        return changed

    def send_actors(self, actors: list[Any], now: Any) -> None:
        due = list(actors)
        if self._last is not None:
            for actor in self.actors:
                if actor not in due and _ticked_between(actor.options["periodic"], self._last, now):
                    logger.warning("%s missed a tick while the clock waited for RabbitMQ; sending it now", actor)
                    due.append(actor)
        self._last = now
        minute = now.replace(second=0, microsecond=0)
        for actor in due:
            sent = self._sent.get(actor.actor_name)
            if sent is not None and sent >= minute:
                continue  # a tick that waited out an outage left during this minute: it stands for this one
            super().send_actors([actor], now)  # waits for RabbitMQ however long (the broker serves)
            self._sent[actor.actor_name] = self.now()


#: How often the clock checks, between ticks, that RabbitMQ still accepts its credentials.
ACCESS_CHECK_SECONDS = 5.0


class AccessWatch(threading.Thread):
    """Opens (and closes) one connection every :data:`ACCESS_CHECK_SECONDS`; a refusal ends the
    process through the broker's own refusal path (one line, status 78). RabbitMQ away is not a
    refusal: the ticks wait it out as they always do."""

    def __init__(self, broker: Any, interval: float = ACCESS_CHECK_SECONDS) -> None:
        super().__init__(name="backlane-access-watch", daemon=True)
        self.broker = broker
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        from backlane.messaging.links import probe

        url = self.broker.faults.url
        logger.info("the clock checks every %g s that RabbitMQ still accepts its credentials", self.interval)
        while not self.stopped.wait(self.interval):
            try:
                connection = probe(url, self.broker.faults.refused, getattr(self.broker, "heartbeat", None))
            except Exception:  # never the clock's end: its ticks report what is wrong
                logger.debug("access check failed", exc_info=True)
                continue
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()


class TickWatch(threading.Thread):
    """Every ``interval`` seconds, applies changed ticks (:meth:`OutageProofScheduler.refresh_ticks`)
    and wakes the clock, which then sleeps until the next tick of the new schedule rather than
    the one it was sleeping towards (a tick already sent this minute is not sent again)."""

    def __init__(self, scheduler: OutageProofScheduler, interval: float) -> None:
        super().__init__(name="backlane-tick-watch", daemon=True)
        self.scheduler = scheduler
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if self.scheduler.refresh_ticks():
                    self.scheduler.alarm_q.put_nowait(True)
            except Exception:  # never the clock's end: the old schedule stands
                logger.warning("could not apply the pipelines' ticks", exc_info=True)


def _pipelines_of(actors: list[Any]) -> dict[str, Any]:
    """Each discover actor's registered pipeline, by the actor's name."""
    from backlane.core.registry import REGISTRY

    names = {actor.actor_name for actor in actors}
    return {
        reg.discover_actor.actor_name: reg
        for reg in REGISTRY
        if reg.discover_actor is not None and reg.discover_actor.actor_name in names
    }


def _ticked_between(spec: Any, after: Any, until: Any) -> bool:
    """Whether cron ``spec`` has a tick in the minutes strictly after ``after`` and before ``until``."""
    minute = max(after, until - CATCH_UP_LIMIT).replace(second=0, microsecond=0).add(minutes=1)
    end = until.replace(second=0, microsecond=0)
    while minute < end:
        if spec.validate(minute):
            return True
        minute = minute.add(minutes=1)
    return False


def install() -> None:
    """Make ``periodiq scheduler`` use :class:`OutageProofScheduler` (periodiq looks its
    ``Scheduler`` up when it starts, after importing the broker module that calls this)."""
    periodiq.Scheduler = OutageProofScheduler
