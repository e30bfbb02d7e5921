"""The daemon side of end-to-end acknowledgement (syslogsrc._acks): the ack tracker's callback,
from whatever thread acknowledges, reaches the reactor of the instance that runs now, and what
comes while none runs waits for the next one (a reload)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from syslogsrc import _acks, emulation
from syslogsrc._acks import UNTRACKED, AckRouter, deliver


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Any], bool, str]] = []

    def __call__(self, tokens: Any, stored: bool) -> None:
        self.calls.append((list(tokens), stored, threading.current_thread().name))


class FakeReactor:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []

    def callFromThread(self, fn: Any, *args: Any) -> None:
        self.calls.append((fn, args))

    def run_calls(self) -> None:
        calls, self.calls = self.calls, []
        for fn, args in calls:
            fn(*args)


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Any:
    name = f"test-acks-{request.node.name}"
    yield name
    _acks.forget(name)


def test_deliver_groups_tokens_by_callback_in_order() -> None:
    a, b = Recorder(), Recorder()
    deliver([(a, 1), (b, "x"), (a, 2), (a, 3)])
    assert [c[:2] for c in a.calls] == [([1, 2, 3], True)]
    assert [c[:2] for c in b.calls] == [(["x"], True)]


def test_a_raising_callback_does_not_stop_the_others() -> None:
    def boom(tokens: Any, stored: bool) -> None:
        raise RuntimeError("boom")

    b = Recorder()
    deliver([(boom, 1), (b, 2)])
    assert [c[:2] for c in b.calls] == [([2], True)]


def test_untracked_bookmarks_are_not_delivered(key: str) -> None:
    router = AckRouter(key)
    fake = FakeReactor()
    router.attach(fake)
    router.acked([UNTRACKED, UNTRACKED])
    assert fake.calls == []
    rec = Recorder()
    router.acked([UNTRACKED, (rec, 7)])
    fake.run_calls()
    assert [c[:2] for c in rec.calls] == [([7], True)]
    assert router.delivered == 1


def test_acknowledgements_wait_for_the_next_instance(key: str) -> None:
    old, new = AckRouter(key), AckRouter(key)
    first, second = FakeReactor(), FakeReactor()
    rec = Recorder()
    old.attach(first)
    old.detach(first)  # run() ended: a reload
    old.acked([(rec, 1), (rec, 2)])  # the destination acknowledges meanwhile
    assert first.calls == [] and rec.calls == []
    new.attach(second)  # the next instance's run()
    second.run_calls()
    assert [c[:2] for c in rec.calls] == [([1, 2], True)]
    new.acked([(rec, 3)])
    second.run_calls()
    assert [c[0] for c in rec.calls] == [[1, 2], [3]]


def test_an_old_instance_detaching_late_does_not_detach_the_new_one(key: str) -> None:
    old, new = AckRouter(key), AckRouter(key)
    first, second = FakeReactor(), FakeReactor()
    old.attach(first)
    new.attach(second)
    old.detach(first)
    rec = Recorder()
    old.acked([(rec, 1)])
    assert second.calls and not first.calls


def test_what_waits_is_bounded(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_acks, "MAX_WAITING", 3)
    router = AckRouter(key)
    rec = Recorder()
    router.acked([(rec, i) for i in range(5)])
    assert router.dropped == 2
    fake = FakeReactor()
    router.attach(fake)
    fake.run_calls()
    assert [c[0] for c in rec.calls] == [[0, 1, 2]]


@pytest_twisted.inlineCallbacks
def test_the_emulated_batched_tracker_reaches_the_reactor_thread(key: str) -> Any:
    router = AckRouter(key)
    tracker = router.tracker(emulation)
    assert isinstance(tracker, emulation.BatchedAckTracker)
    router.attach(reactor)
    rec = Recorder()
    done = threading.Event()

    def destination() -> None:  # a destination's thread acknowledging
        for i in range(300):
            tracker._ack((rec, i) if i % 2 else UNTRACKED)
        done.set()

    threading.Thread(target=destination, name="destination").start()
    for _ in range(500):
        if done.is_set() and sum(len(c[0]) for c in rec.calls) == 150:
            break
        yield task.deferLater(reactor, 0.01, lambda: None)
    router.detach(reactor)
    assert sorted(t for c in rec.calls for t in c[0]) == list(range(1, 300, 2))
    assert {c[2] for c in rec.calls} == {threading.current_thread().name}
    yield defer.succeed(None)


def test_a_drain_lost_with_a_stopping_reactor_is_delivered_by_the_next_one(key: str) -> None:
    old, new = AckRouter(key), AckRouter(key)
    first, second = FakeReactor(), FakeReactor()
    rec = Recorder()
    old.attach(first)
    old.acked([(rec, 1)])  # a drain is queued in the first reactor...
    old.acked([(rec, 2)])  # ...once: this one joins what it will take
    assert len(first.calls) == 1
    old.detach(first)  # ...which stops before running it (a reload)
    first.run_calls()  # a late run of that drain takes nothing: another reactor may own it
    assert rec.calls == []
    new.attach(second)
    second.run_calls()
    assert [c[:2] for c in rec.calls] == [([1, 2], True)]
