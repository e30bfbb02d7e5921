"""End-to-end acknowledgement outside syslog-ng: what ``post_tracked`` promises for the
standalone sinks. An acknowledged message is in the output file (flushed; fsync'ed with
``sync``), a message that cannot be rendered or written is reported not stored, and no
acknowledgement is reported from inside ``post_tracked``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, task

from syslogsrc.interfaces import IAcknowledgingSink, ListenerStats, Origin
from syslogsrc.outputs import JsonLinesOutput
from syslogsrc.parsing import ParsedMessage
from syslogsrc.sinks import CallbackSink, OutputSink


class Acks:
    """An origin's ``acknowledge``: records each call, can check the file at that moment."""

    def __init__(self, check: Any = None) -> None:
        self.calls: list[tuple[list[Any], bool]] = []
        self.check = check
        self.fired: defer.Deferred[None] = defer.Deferred()
        self.inside_post = False

    def __call__(self, tokens: Any, stored: bool) -> None:
        assert not self.inside_post, "acknowledged from inside post_tracked"
        if self.check is not None:
            self.check(list(tokens), stored)
        self.calls.append((list(tokens), stored))
        if not self.fired.called:
            self.fired.callback(None)

    def stored(self) -> list[Any]:
        return [t for tokens, ok in self.calls if ok for t in tokens]

    def lost(self) -> list[Any]:
        return [t for tokens, ok in self.calls if not ok for t in tokens]


def _origin(acks: Acks) -> Origin:
    return Origin("relp", ListenerStats("relp:test"), "127.0.0.1", 40000, 2514, acknowledge=acks)


def _post(sink: Any, frames: list[Any], origin: Origin, tokens: list[Any]) -> int:
    origin.acknowledge.inside_post = True  # type: ignore[union-attr]
    try:
        return sink.post_tracked(frames, origin, tokens)
    finally:
        origin.acknowledge.inside_post = False  # type: ignore[union-attr]


@defer.inlineCallbacks
def _until(predicate: Any, timeout: float = 10.0) -> Any:
    waited = 0.0
    while not predicate():
        assert waited < timeout, "timed out"
        yield task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


class _SyncCounting(JsonLinesOutput):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.syncs = 0

    def sync(self) -> None:
        super().sync()
        self.syncs += 1


class _Broken(JsonLinesOutput):
    def write_rendered(self, data: bytes, count: int) -> None:
        raise OSError(28, "No space left on device")


def test_the_sinks_say_they_acknowledge() -> None:
    out = OutputSink(JsonLinesOutput("/dev/null"), reactor)
    assert IAcknowledgingSink.providedBy(out)
    assert out.acknowledgement == "written"
    assert IAcknowledgingSink.providedBy(CallbackSink(lambda m, o: None))


@pytest_twisted.inlineCallbacks
def test_acknowledged_messages_are_in_the_file(tmp_path: Path) -> Any:
    path = tmp_path / "out.jsonl"
    seen_in_file: list[int] = []
    acks = Acks(lambda tokens, ok: seen_in_file.append(len(path.read_bytes().splitlines())))
    sink = OutputSink(_SyncCounting(str(path)), reactor, sync=True)
    origin = _origin(acks)
    frames = [b"<13>Oct 11 22:14:15 host app: m%d" % i for i in range(5)]
    assert _post(sink, frames, origin, [1, 2, 3, 4, 5]) == 5
    assert _post(sink, [b"<13>Oct 11 22:14:15 host app: m5"], origin, [6]) == 1
    yield _until(lambda: len(acks.stored()) == 6)
    assert sorted(acks.stored()) == [1, 2, 3, 4, 5, 6]
    assert acks.lost() == []
    # every acknowledgement came when its lines were already flushed to the file
    assert seen_in_file and min(seen_in_file) >= 5
    assert sink._writer.output.syncs >= 1  # type: ignore[attr-defined]
    yield sink.close()


@pytest_twisted.inlineCallbacks
def test_a_message_that_cannot_be_written_is_not_stored(tmp_path: Path) -> Any:
    acks = Acks()
    sink = OutputSink(_Broken(str(tmp_path / "out.jsonl")), reactor)
    assert _post(sink, [b"<13>a", b"<13>b"], _origin(acks), ["a", "b"]) == 2
    yield _until(lambda: len(acks.calls) >= 1)
    assert acks.stored() == [] and sorted(acks.lost()) == ["a", "b"]
    yield sink.close()


@pytest_twisted.inlineCallbacks
def test_a_message_that_cannot_be_rendered_alone_is_not_stored(tmp_path: Path) -> Any:
    class Picky(JsonLinesOutput):
        def render_batch(self, messages: Any, origin: Origin) -> bytes:
            raise ValueError("one at a time")

        def render(self, message: ParsedMessage, origin: Origin) -> bytes:
            if message.pairs.get("MESSAGE") == "bad":
                raise ValueError("cannot render")
            return super().render(message, origin)

    acks = Acks()
    sink = OutputSink(Picky(str(tmp_path / "out.jsonl")), reactor)
    origin = _origin(acks)
    frames = [b"<13>Oct 11 22:14:15 host app: good", b"<13>Oct 11 22:14:15 host app: bad"]
    assert _post(sink, frames, origin, [1, 2]) == 2
    yield _until(lambda: len(acks.stored()) + len(acks.lost()) == 2)
    assert acks.stored() == [1] and acks.lost() == [2]
    assert origin.stats.dropped == 1
    yield sink.close()


@pytest_twisted.inlineCallbacks
def test_a_callback_acknowledges_when_it_returns_or_its_deferred_fires() -> Any:
    pending: list[defer.Deferred[None]] = []

    def callback(message: ParsedMessage, origin: Origin) -> Any:
        text = message.pairs["MESSAGE"]
        if text == "later":
            d: defer.Deferred[None] = defer.Deferred()
            pending.append(d)
            return d
        if text == "raise":
            raise RuntimeError("no")
        return None

    acks = Acks()
    sink = CallbackSink(callback, reactor=reactor)
    frames = [
        b"<13>Oct 11 22:14:15 host app: now",
        b"<13>Oct 11 22:14:15 host app: later",
        b"<13>Oct 11 22:14:15 host app: raise",
        b"<13>Oct 11 22:14:15 host app: later",
    ]
    assert _post(sink, frames, _origin(acks), ["now", "later1", "raise", "later2"]) == 4
    yield _until(lambda: len(acks.calls) >= 2)
    assert acks.stored() == ["now"] and acks.lost() == ["raise"]
    pending[0].callback(None)
    pending[1].errback(RuntimeError("the database said no"))
    assert acks.stored() == ["now", "later1"]
    assert acks.lost() == ["raise", "later2"]
