"""The worker child's SIGTERM handling: a repeat within the window is the group's copy; later, a kill."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from backlane.core import worker_process


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_a_repeat_within_the_window_reaches_dramatiq_once_and_a_later_one_again(sigterm_restored: None) -> None:
    received: list[int] = []
    now = [100.0]
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    handler = worker_process.one_stop_per_group_signal(window=2.0, clock=lambda: now[0])
    assert handler is not None and signal.getsignal(signal.SIGTERM) is handler

    handler(signal.SIGTERM, None)
    now[0] += 0.01
    handler(signal.SIGTERM, None)  # the parent's forwarded copy
    assert received == [signal.SIGTERM]
    now[0] += 5
    handler(signal.SIGTERM, None)  # the operator asks again: Dramatiq's "kill now"
    assert received == [signal.SIGTERM, signal.SIGTERM]


def test_nothing_to_wrap_leaves_the_default(sigterm_restored: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert worker_process.one_stop_per_group_signal() is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_only_a_forked_worker_is_tied(sigterm_restored: None, monkeypatch: Any) -> None:
    calls: list[str] = []
    monkeypatch.setattr(worker_process, "die_with_parent", lambda: calls.append("die") or True)
    monkeypatch.setattr(worker_process, "one_stop_per_group_signal", lambda: calls.append("stop"))
    worker_process.tie_to_parent()  # pytest is nobody's multiprocessing child
    assert calls == []
    monkeypatch.setattr(worker_process, "is_forked_worker", lambda: True)
    worker_process.tie_to_parent()
    assert calls == ["die", "stop"]
