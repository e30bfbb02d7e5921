"""SyslogSource's side of the daemon's stale wakeups, against a fake daemon window.

The daemon frees a window slot, then waits for the GIL to call ``wakeup()``; meanwhile the run()
thread may have taken the slot again. A post into the empty window is dropped by the daemon
("Incorrectly suspended source, dropping message"), leaves the message without ``HOST_FROM``,
and calls no ``suspend()``; the source holds the message and posts it again at a later wakeup.
The end-to-end figures are in docs/syslog-ng.md (tests/soak/losses.py); these tests pin the
rules of source.py's *flow control* comment on exact interleavings."""

from __future__ import annotations

from typing import Any

import pytest

from syslogsrc import _posting as posting
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.source import TwistedSource


@pytest.fixture(autouse=True)
def _no_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No daemon to close batches with: the fake window is the whole daemon here."""
    monkeypatch.setattr(posting, "_CLOSE_BATCH", False)


class FakeWindow(TwistedSource):
    """post_message() as the daemon's non-blocking mode does it: drop into an empty window
    (nothing set on the message), else take a slot, set HOST_FROM, and call suspend() when the
    window is empty after the post."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        self.taken: list[bytes] = []
        self.drops = 0

    def listeners(self, reactor: object) -> list[object]:
        return []

    def post_message(self, msg: Any) -> None:  # type: ignore[override]
        if self.window == 0:
            self.drops += 1
            return
        self.window -= 1
        msg["HOST_FROM"] = "localhost"
        self.taken.append(msg["MESSAGE"])
        if self.window == 0:
            self.suspend()

    def close_batch(self) -> None:
        pass

    def ack(self) -> int:
        """A destination acknowledged one message: the token wakeup() would carry."""
        self.window += 1
        return self._posts


def _origin() -> Origin:
    return Origin(transport="tcp", stats=ListenerStats(name="tcp:1"))


def test_wakeups_that_ran_before_a_dropped_post_do_not_post_into_the_empty_window() -> None:
    src = FakeWindow(window=1)
    origin = _origin()
    assert src.post([b"m1"], origin) == 1  # the window is empty now: suspended at post 1
    assert src._suspended
    # Two wakeups ran (in acknowledging threads) before the reactor got to them; the slot each
    # announced is already gone (taken by posts the daemon saw before the suspend).
    stale_a = stale_b = src._posts
    src._resume(stale_a)  # looks genuine: the first post after it is checked
    assert src.post([b"m2", b"m3"], origin) == 1  # m2 dropped by the daemon: held, paused
    assert src.drops == 1 and src._suspended and len(src._held) == 1
    src._resume(stale_b)  # ran before m2's post began: stale, m2 stays held
    assert src.drops == 1, "a stale wakeup posted the held message into the empty window again"
    assert src._suspended
    token = src.ack()  # the genuine one: its slot was freed after the drop
    src._resume(token)
    assert src.drops == 1 and not src._held
    assert src.taken == [b"m1", b"m2"]
    assert origin.stats.posted == 2


def test_the_wakeup_after_a_drop_still_resumes() -> None:
    # The rule must never ignore the wakeup that ends the suspension: it ran after the drop.
    src = FakeWindow(window=1)
    origin = _origin()
    src.post([b"m1"], origin)
    src._resume(src._posts)  # stale but undecidable: m2 is dropped and held
    src.post([b"m2"], origin)
    assert src.drops == 1 and src._held
    src._resume(src.ack())
    assert not src._held and src.taken == [b"m1", b"m2"]
    assert src._suspended and src.window == 0  # m2 took the one slot: suspended again


class _CallAtOnce:
    """The reactor's callFromThread, run at once (the test is the reactor's thread)."""

    def callFromThread(self, f: Any, *args: Any) -> None:
        f(*args)


def test_the_wakeup_4x_sends_with_request_exit_resumes_nothing() -> None:
    # 4.x's _worker_thread_request_exit() calls wakeup() right after request_exit(), in the same
    # thread, with the window as it is: resuming then posted into an empty window, and the
    # daemon logged a drop.
    src = FakeWindow(window=1)
    origin = _origin()
    src.post([b"m1"], origin)
    src._reactor = _CallAtOnce()
    src.request_exit()  # attached, not our own reactor: nothing to stop here
    src.wakeup()  # the daemon's, from request_exit()'s thread
    assert src._suspended and src.drops == 0
    # an acknowledgement after it (a slot freed while the source stops) still resumes
    src.ack()
    src.wakeup()
    assert not src._suspended
