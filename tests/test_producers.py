"""syslogsrc.producers: the Backlog every protocol posts through, alone (no transport), and the
guarantees its docstring gives: nothing posted while paused, every message once and in order,
one call per batch, nothing lost silently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from twisted.python.failure import Failure
from zope.interface import implementer

from syslogsrc.interfaces import IAcknowledgingSink, ListenerStats, Origin
from syslogsrc.producers import Backlog, Batch, ProducerSet, ProducerStopped
from syslogsrc.testing import RecordingSink


def origin(name: str = "tcp:5514", peer: str = "192.0.2.7") -> Origin:
    return Origin("tcp", ListenerStats(name), peer, 40000, 5514)


class Producer:
    """The smallest producer over a Backlog: what a new protocol writes."""

    def __init__(self, sink: Any, **options: Any) -> None:
        self.backlog = Backlog(sink, **options)
        self.reading = True
        sink.register_producer(self)

    def pauseProducing(self) -> None:
        if self.backlog.pause():
            self.reading = False

    def resumeProducing(self) -> None:
        if self.backlog.resume():
            self.reading = True

    def stopProducing(self) -> None:
        if self.backlog.stop():
            self.reading = False


class Told(Batch):
    """A batch that records how it left the backlog."""

    __slots__ = ("outcome",)

    def __init__(self, messages: Sequence[bytes], origin: Origin) -> None:
        super().__init__(messages, origin)
        self.outcome: list[Failure | None] = []

    def finished(self, failure: Failure | None) -> None:
        self.outcome.append(failure)


class Answered(Told):
    """A batch that records what the sink took of it, call by call (RELP answers each)."""

    __slots__ = ("took",)

    def __init__(self, messages: Sequence[bytes], origin: Origin) -> None:
        super().__init__(messages, origin)
        self.took: list[list[bytes]] = []

    def taken(self, count: int) -> None:
        self.took.append(list(self.messages[:count]))


def test_a_batch_is_one_call_and_nothing_waits() -> None:
    sink = RecordingSink()
    producer = Producer(sink)
    producer.backlog.offer([b"a", b"b"], origin())
    producer.backlog.offer([b"c"], origin())
    assert sink.batches == [[b"a", b"b"], [b"c"]]
    assert not producer.backlog and producer.backlog.waiting == 0


def test_a_pause_inside_post_keeps_the_rest_first_in_line() -> None:
    sink = RecordingSink(window=2)
    producer = Producer(sink)
    where = origin()
    producer.backlog.offer([b"1", b"2", b"3"], where)
    assert not producer.reading
    producer.backlog.offer([b"4"], where)  # read after the pause: waits behind 3
    assert sink.messages == [b"1", b"2"]
    assert [b.messages for b in producer.backlog.batches] == [[b"3"], [b"4"]]
    assert producer.backlog.waiting == 2
    sink.window = None
    sink.resume()
    assert sink.batches == [[b"1", b"2"], [b"3"], [b"4"]]  # one call per batch
    assert sink.posted_while_paused == []
    assert producer.reading


def test_merge_posts_the_reads_of_one_origin_that_waited_together_in_one_call() -> None:
    sink = RecordingSink(window=1)
    producer = Producer(sink, merge=True)
    where, other = origin(), origin(peer="192.0.2.8")
    producer.backlog.offer([b"1", b"2"], where)
    producer.backlog.offer([b"3"], where)
    producer.backlog.offer([b"4"], other)  # another origin: its own batch
    assert len(producer.backlog) == 2
    sink.window = None
    sink.resume()
    assert sink.batches == [[b"1"], [b"2", b"3"], [b"4"]]


def test_merge_joins_a_subclass_only_when_it_says_it_can() -> None:
    class Joining(Answered):
        __slots__ = ()

        def join(self, then: Batch) -> bool:
            self.messages = [*self.messages, *then.messages]
            return True

    sink = RecordingSink()
    producer = Producer(sink, merge=True)
    sink.pause()
    where = origin()
    told = [Told([b"1"], where), Told([b"2"], where)]
    joining = [Joining([b"3"], where), Joining([b"4"], where)]
    for batch in [*told, *joining]:
        producer.backlog.add(batch)
    producer.backlog.offer([b"5"], where)  # a plain batch joins no subclass
    assert len(producer.backlog) == 4
    sink.resume()
    assert sink.batches == [[b"1"], [b"2"], [b"3", b"4"], [b"5"]]
    assert [batch.outcome for batch in told] == [[None], [None]]  # each told its end
    assert joining[0].took == [[b"3", b"4"]] and joining[1].took == []


def test_nothing_is_posted_while_paused_and_a_resume_inside_post_does_not_post_around() -> None:
    sink = RecordingSink()
    producer = Producer(sink)
    sink.pause()
    producer.backlog.offer([b"a"], origin())
    assert sink.posts == [] and sink.posted_while_paused == []

    def flap(message: object) -> None:
        if message == b"b":  # inside post: paused, resumed, and a read arrives
            sink.pause()
            sink.resume()
            producer.backlog.offer([b"late"], origin())

    sink.on_post = flap
    sink.resume()  # drains a; then offer b c while re-entered
    producer.backlog.offer([b"b", b"c"], origin())
    assert sink.messages == [b"a", b"b", b"c", b"late"]
    assert sink.posted_while_paused == []


def test_a_sink_that_takes_less_without_pausing_is_waited_for() -> None:
    class Stingy(RecordingSink):
        def post(self, messages: Sequence[Any], origin: Origin) -> int:
            return super().post(messages[:1], origin)

    sink = Stingy()
    producer = Producer(sink)
    producer.backlog.offer([b"1", b"2"], origin())
    assert sink.messages == [b"1"]
    assert producer.backlog.waiting == 1  # not posted again at once: it waits for a resume
    sink.pause()
    sink.resume()
    assert sink.messages == [b"1", b"2"]


def test_a_sink_that_raises_loses_the_batch_counted_and_reported() -> None:
    sink = RecordingSink(raise_on=[b"bad"])
    errors: list[tuple[Failure, Batch]] = []
    producer = Producer(sink, on_error=lambda failure, batch: errors.append((failure, batch)))
    where = origin()
    producer.backlog.offer([b"ok", b"bad"], where)
    producer.backlog.offer([b"next"], where)
    assert sink.messages == [b"next"]
    assert where.stats.dropped == 2
    assert len(errors) == 1 and errors[0][0].check(ValueError)
    assert errors[0][1].messages == [b"ok", b"bad"] and errors[0][1].origin is where


def test_stop_counts_what_waits_and_what_comes_after() -> None:
    sink = RecordingSink(window=1)
    producer = Producer(sink)
    where = origin()
    told = Told([b"3", b"4"], where)
    producer.backlog.offer([b"1", b"2"], where)
    producer.backlog.add(told)
    sink.stop()
    assert where.stats.dropped == 3
    assert len(told.outcome) == 1 and told.outcome[0].check(ProducerStopped)
    producer.backlog.offer([b"5"], where)
    late = Told([b"6"], where)
    producer.backlog.add(late)
    assert where.stats.dropped == 5
    assert late.outcome[0].check(ProducerStopped)
    assert not producer.backlog.resume() and not producer.backlog.stop()
    assert sink.messages == [b"1"]


def test_a_stop_from_inside_post_drops_the_rest_of_the_batch() -> None:
    sink = RecordingSink()
    producer = Producer(sink)
    where = origin()

    def stop(message: object) -> None:
        if message == b"1":  # the source stops while the sink takes the batch
            sink.pause()
            sink.stop()

    sink.on_post = stop
    told = Told([b"1", b"2", b"3"], where)
    producer.backlog.add(told)
    assert sink.messages == [b"1"]
    assert where.stats.dropped == 2
    assert told.outcome[0].check(ProducerStopped)


def test_a_batch_is_told_when_it_is_all_posted_and_an_empty_one_at_once() -> None:
    sink = RecordingSink(window=1)
    producer = Producer(sink)
    told = Told([b"a", b"b"], origin())
    producer.backlog.add(told)
    assert told.outcome == []
    sink.resume()
    assert told.outcome == [None]
    empty = Told([], origin())
    producer.backlog.add(empty)
    producer.backlog.offer([], origin())
    assert empty.outcome == [None]
    assert sink.batches == [[b"a"], [b"b"]]  # a sink is never called without a message


def test_take_and_put_back_hand_what_waits_to_another_backlog_in_order() -> None:
    old_sink, new_sink = RecordingSink(window=1), RecordingSink()
    old = Producer(old_sink)
    where = origin()
    old.backlog.offer([b"1", b"2"], where)
    old.backlog.offer([b"3"], where)
    taken = old.backlog.take()
    assert [b.messages for b in taken] == [[b"2"], [b"3"]]
    old_sink.stop()
    assert where.stats.dropped == 0  # taken, not dropped
    new = Producer(new_sink)
    new.backlog.offer([b"4"], where)
    new_sink.pause()
    new.backlog.offer([b"5"], where)
    new.backlog.put_back(taken)  # first in line, before what this one read
    new_sink.resume()
    assert new_sink.messages == [b"4", b"2", b"3", b"5"]


@implementer(IAcknowledgingSink)
class TrackingSink(RecordingSink):
    """Takes messages with tokens and remembers them (the tokens a RELP protocol passes)."""

    acknowledgement = "written"

    def __init__(self, window: int | None = None) -> None:
        super().__init__(window)
        self.tokens: list[Any] = []

    def post_tracked(self, messages: Sequence[Any], origin: Origin, tokens: Sequence[Any]) -> int:
        assert len(tokens) == len(messages)
        taken = self.post(messages, origin)
        self.tokens.extend(tokens[:taken])
        return taken


def test_batches_with_tokens_are_posted_tracked_with_their_tokens_in_step() -> None:
    sink = TrackingSink(window=2)
    producer = Producer(sink, merge=True)
    where = origin()
    producer.backlog.offer([b"a", b"b", b"c"], where, tokens=[1, 2, 3])
    producer.backlog.offer([b"d"], where, tokens=[4])
    producer.backlog.offer([b"e"], where)  # no tokens: not merged with tracked ones, posted
    assert sink.tokens == [1, 2]
    sink.window = None
    sink.resume()
    assert sink.messages == [b"a", b"b", b"c", b"d", b"e"]
    assert sink.tokens == [1, 2, 3, 4]
    assert sink.batches == [[b"a", b"b"], [b"c", b"d"], [b"e"]]


@pytest.mark.parametrize("seed", range(20))
def test_every_message_once_in_order_whatever_the_window(seed: int) -> None:
    import random

    rng = random.Random(seed)
    sink = RecordingSink(window=rng.randint(1, 5))
    producer = Producer(sink, merge=rng.random() < 0.5)
    where = origin()
    sent: list[bytes] = []
    for i in range(60):
        batch = [b"%d.%d" % (i, j) for j in range(rng.randint(0, 4))]
        sent.extend(batch)
        producer.backlog.offer(batch, where)
        if sink.paused and rng.random() < 0.3:
            sink.resume()
    while sink.paused:
        sink.resume()
    assert sink.messages == sent
    assert sink.posted_while_paused == []
    assert where.stats.dropped == 0


def test_a_producer_set_pauses_and_resumes_backlog_producers() -> None:
    producers = ProducerSet()
    sink = RecordingSink()
    a, b = Producer(sink), Producer(sink)
    producers.register(a)
    producers.register(b)
    producers.pause()
    assert not (a.reading or b.reading)
    producers.resume()
    assert a.reading and b.reading
    producers.stop()
    assert a.backlog.stopped and b.backlog.stopped


def test_put_back_after_stop_drops_and_counts() -> None:
    sink = RecordingSink()
    producer = Producer(sink)
    sink.stop()
    where = origin()
    told = Told([b"a", b"b"], where)
    producer.backlog.put_back([told, Batch([b"c"], where)])
    assert where.stats.dropped == 3
    assert told.outcome[0].check(ProducerStopped)
    assert not producer.backlog and sink.messages == []


def test_a_batch_hears_each_take_before_it_is_told_the_end() -> None:
    sink = RecordingSink(window=2)
    producer = Producer(sink)
    batch = Answered([b"1", b"2", b"3"], origin())
    producer.backlog.add(batch)
    assert batch.took == [[b"1", b"2"]] and batch.outcome == []
    assert batch.messages == [b"3"]  # what waits
    sink.resume()
    assert batch.took == [[b"1", b"2"], [b"3"]] and batch.outcome == [None]


def test_a_batch_lost_to_a_raising_sink_hears_no_take() -> None:
    sink = RecordingSink(raise_on=[b"bad"])
    producer = Producer(sink)
    batch = Answered([b"ok", b"bad"], origin())
    producer.backlog.add(batch)
    assert batch.took == [] and batch.outcome[0].check(ValueError)


def test_what_a_sender_resends_is_not_counted_as_dropped() -> None:
    # RELP's client sends again whatever it was not answered for: a stop, a stop from inside
    # post, or a raising sink lose nothing, and count nothing; each batch is still told why.
    sink = RecordingSink(window=1, raise_on=[b"bad"])
    errors: list[Batch] = []
    producer = Producer(sink, sender_resends=True, on_error=lambda _, b: errors.append(b))
    where = origin()
    first, second = Answered([b"1", b"2"], where), Answered([b"3"], where)
    producer.backlog.add(first)
    producer.backlog.add(second)
    sink.stop()
    producer.backlog.offer([b"4"], where)
    assert first.took == [[b"1"]] and first.outcome[0].check(ProducerStopped)
    assert second.outcome[0].check(ProducerStopped)
    assert where.stats.dropped == 0

    inside = RecordingSink(raise_on=[b"bad"])
    producer = Producer(inside, sender_resends=True, on_error=lambda _, b: errors.append(b))
    producer.backlog.add(Answered([b"bad"], where))
    assert len(errors) == 1 and where.stats.dropped == 0

    def stop(message: object) -> None:
        inside.pause()
        inside.stop()

    inside.on_post = stop
    cut = Answered([b"5", b"6"], where)
    producer.backlog.add(cut)
    assert cut.took == [[b"5"]] and cut.outcome[0].check(ProducerStopped)
    assert where.stats.dropped == 0
