"""Every rule of the emulation (syslogsrc/emulation.py), one test each that fails without it.

Each test says what would break without its rule. The daemon's behaviour behind the rules is
checked against real syslog-ng by tests/test_agreement.py; docs/emulation.md lists both.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _sources import Idle

from syslogsrc import emulation
from syslogsrc.emulation import (
    BATCH_THREAD_ERROR,
    DROP_ERROR,
    NOT_A_MESSAGE_ERROR,
    READ_ONLY_ERROR,
    THREAD_ERROR,
    BatchedAckTracker,
    ConsecutiveAckTracker,
    InstantAckTracker,
    Logger,
    LogMessage,
    ParseOptions,
    Persist,
    SourceDriver,
)
from syslogsrc.host import SourceHost, SourceInitError
from syslogsrc.testing import wait_until

WAIT = 5.0  # seconds: the most any test waits for something that should happen at once


# --------------------------------------------------------------------------------------------
# helpers


class Suspendable(Idle):
    """Non-blocking mode: records (event, thread ident, free slots) for suspend/wakeup."""

    def __init__(self):
        super().__init__()
        self.events = []
        self.woken = threading.Event()

    def suspend(self):
        driver = self.__dict__["_driver"]
        self.events.append(("suspend", threading.get_ident(), driver.free))

    def wakeup(self):
        driver = self.__dict__["_driver"]
        self.events.append(("wakeup", threading.get_ident(), driver.free))
        self.woken.set()


def make_driver(source=None, iw=3, **kwargs):
    """A driver whose consumer only collects (nothing is acknowledged unless a test does)."""
    delivered = []
    driver = SourceDriver(source or Idle(), log_iw_size=iw, consumer=delivered.append, **kwargs)
    return driver, delivered


class RunThread:
    """A thread playing run(): the driver's run thread; ``call(fn)`` runs fn in it."""

    def __init__(self, driver):
        self.driver = driver
        self.ready = threading.Event()
        self.jobs = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        self.ready.wait()

    def _loop(self):
        self.driver.run_thread = threading.get_ident()
        self.ident = threading.get_ident()
        self.ready.set()
        while True:
            with self.cond:
                while not self.jobs:
                    self.cond.wait()
                job = self.jobs.pop(0)
            if job is None:
                return
            job()

    def start(self, fn):
        """Run ``fn`` in the run thread; returns an Event set when it has returned, and a list
        holding its result or exception."""
        done, out = threading.Event(), []

        def job():
            try:
                out.append(fn())
            except BaseException as exc:
                out.append(exc)
            done.set()

        with self.cond:
            self.jobs.append(job)
            self.cond.notify()
        return done, out

    def call(self, fn):
        done, out = self.start(fn)
        assert done.wait(WAIT), "the run thread is stuck"
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    def post(self, *texts):
        """The source posts one LogMessage per text, in the run thread, in order; returns what
        the last post_message() returned."""
        result = None
        for text in texts:
            result = self.call(lambda text=text: self.driver.source.post_message(LogMessage(text)))
        return result

    def stop(self):
        with self.cond:
            self.jobs.append(None)
            self.cond.notify()
        self.thread.join(WAIT)


def run_suspendable(run_thread, iw):
    """A :class:`Suspendable` source in a :func:`make_driver` driver of window ``iw``, and its
    run thread: ``source, driver, delivered, rt``."""
    source = Suspendable()
    driver, delivered = make_driver(source, iw=iw)
    return source, driver, delivered, run_thread(driver)


@pytest.fixture
def run_thread():
    threads = []

    def make(driver):
        t = RunThread(driver)
        threads.append(t)
        return t

    yield make
    for t in threads:
        t.driver.request_exit()
        t.stop()


def in_other_thread(fn):
    out = []

    def target():
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(WAIT)
    return out[0]


# --------------------------------------------------------------------------------------------
# post_message: thread check and argument


def test_post_from_another_thread_raises_the_daemons_error(run_thread):
    # Without the check a source could post from a reactor/helper thread here and crash
    # syslog-ng (issue syslog-ng#2368): the emulation must refuse exactly like the daemon.
    driver, delivered = make_driver()
    run_thread(driver)
    exc = in_other_thread(lambda: driver.source.post_message(LogMessage("x")))
    assert isinstance(exc, RuntimeError)
    assert str(exc) == THREAD_ERROR == "post_message must be called from main thread"
    assert delivered == []


def test_post_from_the_controlling_thread_raises_too(run_thread):
    # init()/request_exit() run in the controlling (main) thread: posting there is refused.
    driver, _ = make_driver()
    run_thread(driver)
    with pytest.raises(RuntimeError, match=THREAD_ERROR):
        driver.source.post_message(LogMessage("x"))


def test_post_from_init_raises():
    # Without it, a source that posts in init() would pass here and fail in the daemon.
    class PostsInInit(Idle):
        def init(self, options):
            try:
                self.post_message(LogMessage("too early"))
            except RuntimeError as exc:
                self.error = str(exc)
            return True

    with SourceHost(PostsInInit) as host:
        assert host.source.error == THREAD_ERROR
    assert host.messages == []


def test_post_from_run_is_delivered(run_thread):
    driver, delivered = make_driver()
    rt = run_thread(driver)
    msg = LogMessage("ok")
    rt.call(lambda: driver.source.post_message(msg))
    assert delivered == [msg]


def test_post_of_a_non_message_raises_typeerror(run_thread):
    # Without it a str would reach the consumer and fail there, far from the mistake.
    driver, delivered = make_driver()
    rt = run_thread(driver)
    with pytest.raises(TypeError, match=NOT_A_MESSAGE_ERROR):
        rt.call(lambda: driver.source.post_message("a string"))
    assert delivered == []


def test_source_without_host_cannot_post():
    with pytest.raises(RuntimeError, match="not attached"):
        Idle().post_message(LogMessage("x"))


# --------------------------------------------------------------------------------------------
# the window (log-iw-size)


def test_window_is_taken_by_posts_and_freed_by_acks(run_thread):
    # Without the window there is no back-pressure: a slow destination could not slow a source.
    driver, delivered = make_driver(Suspendable(), iw=3)
    rt = run_thread(driver)
    for i in range(2):
        rt.call(lambda i=i: driver.source.post_message(LogMessage(str(i))))
    assert driver.free == 1
    driver.ack(delivered[0])
    assert driver.free == 2
    driver.ack(delivered[1])
    assert driver.free == 3
    assert driver.stats["posted"] == 2 and driver.stats["acked"] == 2


def test_window_size_must_be_positive():
    with pytest.raises(ValueError, match="log-iw-size"):
        make_driver(iw=0)


# --------------------------------------------------------------------------------------------
# blocking mode (no suspend())


def test_blocking_post_waits_for_a_free_slot(run_thread):
    # Without it the post that empties the window would return and the next one be dropped:
    # the daemon instead blocks the poster (and its whole event loop) until an ack.
    driver, delivered = make_driver(Idle(), iw=2)
    rt = run_thread(driver)
    rt.post("1")
    done, _ = rt.start(lambda: driver.source.post_message(LogMessage("2")))
    assert not done.wait(0.3), "the post that emptied the window returned"
    driver.ack(delivered[0])
    assert done.wait(WAIT), "an ack did not unblock the post"
    assert driver.stats["dropped"] == 0


def test_blocking_post_returns_when_exit_is_requested(run_thread):
    # Without it stopping a source blocked on a stalled destination would hang forever.
    driver, delivered = make_driver(Idle(), iw=1)
    rt = run_thread(driver)
    done, _ = rt.start(lambda: driver.source.post_message(LogMessage("1")))
    assert not done.wait(0.3)
    driver.request_exit()
    assert done.wait(WAIT), "request_exit did not unblock the post"
    # the window is still empty: the next post is dropped (3.38.1 and 4.8.1 alike)
    rt.post("2")
    assert [m["MESSAGE"] for m in delivered] == [b"1"]
    assert driver.stats["dropped"] == 1


def test_blocking_mode_never_calls_suspend(run_thread):
    driver, _ = make_driver(Idle(), iw=1)
    assert not driver.nonblocking
    rt = run_thread(driver)
    done, _ = rt.start(lambda: driver.source.post_message(LogMessage("1")))
    driver.request_exit()
    assert done.wait(WAIT)
    assert driver.stats["suspends"] == 0


# --------------------------------------------------------------------------------------------
# suspend/wakeup mode


def test_suspend_is_called_in_the_posters_thread_when_the_window_empties(run_thread):
    # Without it a non-blocking source would never learn it must stop reading.
    source, driver, _, rt = run_suspendable(run_thread, 3)
    rt.post(*map(str, range(2)))
    assert source.events == []  # not before the window is empty
    rt.post("2")
    assert source.events == [("suspend", rt.ident, 0)]
    assert driver.suspended and driver.stats["suspends"] == 1


def test_wakeup_comes_from_the_acking_thread_after_suspend(run_thread):
    # Without it a suspended source would stay paused forever; from the wrong thread, the
    # source would not need its thread-safe call-in and break in the daemon.
    source, driver, delivered, rt = run_suspendable(run_thread, 2)
    rt.post(*map(str, range(2)))
    consumer_thread = []

    def consumer():
        consumer_thread.append(threading.get_ident())
        driver.ack(delivered[0])

    in_other_thread(consumer)
    assert source.woken.is_set()
    assert [e[0] for e in source.events] == ["suspend", "wakeup"]
    assert source.events[1][1] == consumer_thread[0] != rt.ident
    # the first ack wakes the source (window 0 -> 1), as 3.38.1 and 4.8.1 do
    assert source.events[1][2] == 1


def test_ack_during_the_post_means_no_suspend(run_thread):
    # The daemon looks at the window after the post: destinations that finished the message
    # before post_message() returned (acked in the run() thread) leave it non-empty, and the
    # climb 0 -> 1 still calls wakeup(). Deciding suspend() from the window before that ack
    # left a source suspended with nothing in flight: no ack, no wakeup, stuck for good.
    source = Suspendable()
    driver = None

    def consumer(msg):
        driver.ack(msg)  # delivered and acknowledged at once

    driver = SourceDriver(source, log_iw_size=1, consumer=consumer)
    rt = run_thread(driver)
    rt.post(*map(str, range(3)))
    assert [e[0] for e in source.events] == ["wakeup"] * 3
    assert all(e[1] == rt.ident for e in source.events)
    assert not driver.suspended and driver.stats["dropped"] == 0 and driver.free == 1


def test_wakeup_waits_for_a_suspend_in_progress(run_thread):
    # suspend() and wakeup() are serialised like the daemon's GIL does: an ack that frees the
    # slot while suspend() runs wakes the source only after suspend() returned.
    in_suspend, release = threading.Event(), threading.Event()

    class SlowSuspend(Suspendable):
        def suspend(self):
            in_suspend.set()
            release.wait(WAIT)
            super().suspend()

    source = SlowSuspend()
    driver, delivered = make_driver(source, iw=1)
    rt = run_thread(driver)
    done, _ = rt.start(lambda: source.post_message(LogMessage("1")))
    assert in_suspend.wait(WAIT)
    acker = threading.Thread(target=driver.ack, args=(delivered[0],))
    acker.start()
    time.sleep(0.1)
    assert source.events == []  # the wakeup waits for the "GIL"
    release.set()
    acker.join(WAIT)
    assert done.wait(WAIT)
    assert [e[0] for e in source.events] == ["suspend", "wakeup"]


def test_wakeup_only_after_a_suspend(run_thread):
    source, driver, delivered, rt = run_suspendable(run_thread, 3)
    rt.post("1")
    driver.ack(delivered[0])
    assert source.events == []


def test_wakeup_on_the_first_ack_even_with_a_large_window(run_thread):
    # The daemons measured (tests/test_agreement.py, WakeupThreshold) wake after one ack;
    # waiting for iw/4 would leave a source here paused longer than in syslog-ng.
    source, driver, delivered, rt = run_suspendable(run_thread, 40)
    rt.post(*map(str, range(40)))
    driver.ack(delivered[0])
    assert source.woken.is_set()


def test_post_while_suspended_is_dropped_and_logged(run_thread, caplog):
    # Without it a source that ignores suspend() would pass here but lose messages in the
    # daemon, which drops them with exactly this error.
    _, driver, delivered, rt = run_suspendable(run_thread, 1)
    rt.post("1")
    with caplog.at_level(logging.ERROR, logger="syslogng"):
        result = rt.post("2")
    assert result is None  # no exception: silently dropped
    assert [m["MESSAGE"] for m in delivered] == [b"1"]
    assert driver.stats["dropped"] == 1
    assert DROP_ERROR == "Incorrectly suspended source, dropping message"
    assert [r.getMessage() for r in caplog.records if r.name == "syslogng"] == [DROP_ERROR]


def test_suspend_without_wakeup_is_refused():
    class OnlySuspend(Idle):
        def suspend(self):
            pass

    with pytest.raises(TypeError, match="wakeup"):
        make_driver(OnlySuspend())
    with pytest.raises(SourceInitError, match="OnlySuspend"):
        SourceHost(OnlySuspend).start()


# --------------------------------------------------------------------------------------------
# batches


def test_close_batch_only_from_the_run_thread(run_thread):
    # 4.x raises this; without the check a source could close batches from a reactor thread.
    driver, _ = make_driver()
    rt = run_thread(driver)
    rt.call(driver.source.close_batch)
    exc = in_other_thread(driver.source.close_batch)
    assert isinstance(exc, RuntimeError) and str(exc) == BATCH_THREAD_ERROR


def test_messages_wait_for_close_batch_when_auto_close_is_off(run_thread):
    # 4.8.1 hands nothing of a batch on before close_batch(): a source that forgets it would
    # work here and stall in the daemon without this rule.
    driver, delivered = make_driver()
    driver.auto_close_batches = False
    rt = run_thread(driver)
    rt.post("1", "2")
    assert delivered == []
    rt.call(driver.source.close_batch)
    assert [m["MESSAGE"] for m in delivered] == [b"1", b"2"]


def test_blocking_post_closes_the_batch_before_sleeping(run_thread):
    # 4.8.1+: otherwise a blocked source with an open batch would wait forever for acks of
    # messages nobody has been handed.
    driver, delivered = make_driver(Idle(), iw=1)
    driver.auto_close_batches = False
    rt = run_thread(driver)
    done, _ = rt.start(lambda: driver.source.post_message(LogMessage("1")))
    assert wait_until(lambda: len(delivered) == 1)
    driver.ack(delivered[0])
    assert done.wait(WAIT)


class ManualBatches(Idle):
    """Sets auto_close_batches in __init__ (ignored) or in init() (counts)."""

    where = "init"
    close = True

    def __init__(self):
        super().__init__()
        if self.where == "__init__":
            self.auto_close_batches = False
        self.seen_in_init = None

    def init(self, options):
        self.seen_in_init = self.auto_close_batches
        if self.where == "init":
            self.auto_close_batches = False
        return True

    def run(self):
        self.post_message(LogMessage("1"))
        if self.close:
            self.close_batch()
        self.exit.wait()


def test_auto_close_batches_is_reset_after_init_and_read_after_init():
    # The daemon resets it right after __init__ and reads it after init(): a source that sets
    # it in __init__ gets auto batches; one that sets it in init() gets manual ones.
    class InInit(ManualBatches):
        close = False

    class InConstructor(ManualBatches):
        where = "__init__"
        close = False

    with SourceHost(InConstructor) as host:
        assert host.source.seen_in_init is True
        assert host.wait_for(lambda: len(host.messages) == 1)
    with SourceHost(InInit) as host:
        assert host.driver.auto_close_batches is False
        time.sleep(0.2)
        assert host.messages == []  # never closed


def test_run_returning_with_an_open_batch_is_an_error():
    # 4.8.1 aborts at shutdown in that case; the host makes it a run_error.
    class Forgets(ManualBatches):
        close = False

        def run(self):
            self.post_message(LogMessage("lost"))

    host = SourceHost(Forgets)
    host.start()
    assert host.wait_for(lambda: not host.running)
    host.close()
    assert host.messages == []
    assert isinstance(host.run_error, RuntimeError)
    assert "unclosed batch" in str(host.run_error)


# --------------------------------------------------------------------------------------------
# driver-level attributes: TRANSPORT, HOST, persist_name, parse_options


def test_set_transport_name_overwrites_transport_on_later_posts(run_thread):
    # 4.5+: without it TRANSPORT would keep whatever the message had.
    driver, delivered = make_driver()
    rt = run_thread(driver)
    msg = LogMessage("1")
    msg["TRANSPORT"] = "mine"
    rt.call(lambda: driver.source.post_message(msg))
    driver.source.set_transport_name("rfc6587+tcp")
    msg = LogMessage("2")
    msg["TRANSPORT"] = "mine"
    rt.call(lambda: driver.source.post_message(msg))
    assert [m["TRANSPORT"] for m in delivered] == [b"mine", b"rfc6587+tcp"]
    with pytest.raises(TypeError):
        driver.source.set_transport_name(b"bytes")


def test_host_from_replaces_host_unless_keep_hostname(run_thread):
    driver, delivered = make_driver()
    keep, kept = make_driver(keep_hostname=True)
    for d in (driver, keep):
        rt = run_thread(d)
        msg = LogMessage("x")
        msg["HOST"] = "claimed"
        msg.set_source_ipaddress("192.0.2.9")
        rt.call(lambda d=d, msg=msg: d.source.post_message(msg))
    assert delivered[0]["HOST"] == b"192.0.2.9" == delivered[0]["HOST_FROM"]
    assert kept[0]["HOST"] == b"claimed"


class PersistNamed(Idle):
    def init(self, options):
        self.name_in_init = self.persist_name
        self.parse_options_in_init = self.parse_options
        return True


def test_default_persist_name_is_python_source_of_the_class():
    with SourceHost(PersistNamed) as host:
        assert host.source.name_in_init == f"python-source({__name__}.PersistNamed)"


def test_persist_name_option_wins():
    class Generates(PersistNamed):
        def generate_persist_name(self, options):
            return "generated"

    with SourceHost(Generates, persist_name="configured") as host:
        assert host.source.name_in_init == "python-source.configured"


@pytest.mark.parametrize("returned", ["gen-a", b"gen-a"])
def test_generate_persist_name_gets_the_options(returned):
    class Generates(PersistNamed):
        def generate_persist_name(self, options):
            self.generate_options = options
            return returned

    with SourceHost(Generates, {"listen-on": "x"}) as host:
        assert host.source.name_in_init == "python-source.gen-a"
        assert host.source.generate_options == {"listen_on": "x"}


def test_generate_persist_name_failing_falls_back_to_default(caplog):
    class Broken(PersistNamed):
        def generate_persist_name(self, options):
            raise ValueError("no")

    with SourceHost(Broken) as host:
        assert host.source.name_in_init.startswith("python-source(")
    assert "generate_persist_name" in caplog.text


def test_parse_options_set_only_after_init():
    # The daemon sets the capsule after init(): a source using it in init() must fail here too.
    with SourceHost(PersistNamed) as host:
        assert host.source.parse_options_in_init is None
        assert isinstance(host.source.parse_options, ParseOptions)


# --------------------------------------------------------------------------------------------
# LogMessage


def test_message_values_str_in_bytes_out():
    msg = LogMessage("hello")
    msg["NAME"] = "välue"
    msg[b"BYTES"] = b"\xff\x00x"
    assert msg["MESSAGE"] == b"hello"
    assert msg["NAME"] == "välue".encode()
    assert msg[b"NAME"] == msg["NAME"]
    assert msg["BYTES"] == b"\xff\x00x"
    assert LogMessage(b"raw")["MESSAGE"] == b"raw"


@pytest.mark.parametrize(
    "value", [5, -1, 1.5, True, False, None, [b"a", b"b"]], ids=lambda v: type(v).__name__
)
def test_typed_values_come_back_typed(value):
    msg = LogMessage()
    msg["V"] = value
    assert msg["V"] == value and type(msg["V"]) is type(value)


def test_list_of_str_becomes_list_of_bytes():
    msg = LogMessage()
    msg["L"] = ["a", b"b"]
    assert msg["L"] == [b"a", b"b"]


@pytest.mark.parametrize("value", [object(), {"a": 1}, [1, 2], (b"a",), {b"a"}])
def test_unsupported_value_types_raise_valueerror(value):
    with pytest.raises(ValueError):
        LogMessage()["V"] = value


def test_bad_names_and_messages():
    with pytest.raises(TypeError):
        LogMessage()[5] = "x"
    with pytest.raises(TypeError):
        LogMessage(5)


def test_unset_name_raises_keyerror_get_returns_default():
    # 4.2+: KeyError; a source relying on b"" (3.38) would break on 4.x.
    msg = LogMessage()
    with pytest.raises(KeyError):
        msg["UNSET"]
    assert msg.get("UNSET") is None
    assert msg.get("UNSET", "d") == "d"
    assert "UNSET" not in msg


def test_get_as_str():
    msg = LogMessage()
    msg["S"] = "ü"
    msg["B"] = b"\xff"
    msg["I"] = 7
    msg["T"] = True
    msg["N"] = None
    msg["L"] = ["a", "b"]
    assert msg.get_as_str("S") == "ü"
    assert msg.get_as_str("B", errors="replace") == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        msg.get_as_str("B")
    assert msg.get_as_str("I") == "7"
    assert msg.get_as_str("T") == "true"
    assert msg.get_as_str("N") == ""
    assert msg.get_as_str("L") == "a,b"
    assert msg.get_as_str("UNSET", "dflt") == "dflt"


def test_keys_are_bytes_and_include_macros():
    msg = LogMessage("x")
    msg["NAME"] = "v"
    keys = msg.keys()
    assert all(isinstance(k, bytes) for k in keys)
    assert {b"MESSAGE", b"NAME", b"PRI", b"SOURCEIP"} <= set(keys)
    assert "PRI" in msg and 5 not in msg


def test_posted_message_is_read_only(run_thread):
    # The daemon write-protects a posted message; reusing one must fail here too.
    driver, _ = make_driver()
    rt = run_thread(driver)
    msg = LogMessage("x")
    rt.call(lambda: driver.source.post_message(msg))
    with pytest.raises(TypeError, match=READ_ONLY_ERROR):
        msg["MORE"] = "y"


def test_pri():
    msg = LogMessage()
    assert msg.get_pri() == 13  # user.notice, the daemon's default
    msg.set_pri(165)
    assert msg.get_pri() == 165
    assert msg["FACILITY"] == b"local4" and msg["SEVERITY"] == b"notice"
    assert msg["PRI"] == b"165" and msg["FACILITY_NUM"] == b"20" and msg["LEVEL_NUM"] == b"5"
    with pytest.raises(TypeError):
        msg.set_pri("165")


def test_aware_timestamp_keeps_its_offset():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    msg = LogMessage()
    msg.set_timestamp(dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=plus2))
    stamp = msg.timestamp()
    assert stamp.utcoffset() == dt.timedelta(hours=2)
    assert stamp == dt.datetime(2024, 3, 1, 10, 0, 0, tzinfo=dt.UTC)
    assert msg.get_timestamp() == dt.datetime(2024, 3, 1, 12, 0, 0)  # naive wall clock
    assert msg["ISODATE"] == b"2024-03-01T12:00:00+02:00"


def test_negative_offset_loses_its_days_like_the_daemon():
    # Both daemons read the offset without its days: -05:00 becomes +19:00 with the same wall
    # clock (tests/test_agreement.py, Timestamps). Without the quirk a source giving negative
    # offsets would look right here and be a day off in syslog-ng.
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    msg = LogMessage()
    msg.set_timestamp(dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=minus5))
    assert msg["ISODATE"] == b"2024-03-01T12:00:00+19:00"
    assert msg.timestamp() == dt.datetime(2024, 2, 29, 17, 0, 0, tzinfo=dt.UTC)


def test_parse_keeps_a_negative_offset_exact():
    # The daemon's own parser does not go through a Python datetime: no quirk there.
    msg = LogMessage.parse(b"<13>1 2024-03-01T12:00:00-05:00 h app - - - x", ParseOptions())
    assert msg["ISODATE"] == b"2024-03-01T12:00:00-05:00"


def test_timestamp_must_be_a_datetime():
    with pytest.raises(ValueError):
        LogMessage().set_timestamp(1234.5)


def test_naive_timestamp_is_local_time():
    # 4.x reads a naive datetime as local time. Checked in a subprocess under a zone with a
    # half-hour offset, so that UTC or a wrong offset cannot pass by accident.
    code = textwrap.dedent(
        """
        import datetime as dt
        from syslogsrc.emulation import LogMessage
        msg = LogMessage()
        msg.set_timestamp(dt.datetime(2024, 1, 15, 12, 0, 0))
        print(msg.timestamp().isoformat())
        print(msg["ISODATE"].decode())
        print(msg.received().utcoffset())
        """
    )
    env = dict(os.environ, TZ="Asia/Kolkata", PYTHONPATH=_checkout())
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "2024-01-15T12:00:00+05:30",
        "2024-01-15T12:00:00+05:30",
        "5:30:00",
    ]


def test_receive_time_is_taken_at_creation():
    # 3.x daemons hand out a stale cached time; the emulation stamps each message when made,
    # and STAMP defaults to it.
    before = time.time()
    msg = LogMessage()
    after = time.time()
    time.sleep(0.05)
    assert before <= msg.received().timestamp() <= after
    assert msg.timestamp() == msg.received()
    assert msg.received().utcoffset() is not None


@pytest.mark.parametrize(
    "ip,ok,shown",
    [
        ("192.0.2.1", True, b"192.0.2.1"),
        ("2001:DB8::1", True, b"2001:db8::1"),
        ("not an ip", False, b"127.0.0.1"),
        ("192.0.2.300", False, b"127.0.0.1"),
    ],
)
def test_set_source_ipaddress(ip, ok, shown):
    msg = LogMessage()
    assert msg.set_source_ipaddress(ip, 5514) is ok
    assert msg["SOURCEIP"] == shown
    assert msg["SOURCEPORT"] == (b"5514" if ok else b"0")


def test_set_recvd_rawmsg_size():
    msg = LogMessage()
    assert msg["RAWMSG_SIZE"] == b"0"
    msg.set_recvd_rawmsg_size(1234)
    assert msg["RAWMSG_SIZE"] == b"1234"


def test_parse_needs_the_sources_parse_options():
    with pytest.raises(TypeError):
        LogMessage.parse(b"<13>x", object())


# --------------------------------------------------------------------------------------------
# Persist


@pytest.fixture
def persist_store(tmp_path, monkeypatch):
    store = emulation._PersistStore(str(tmp_path / "persist.json"))
    monkeypatch.setattr(emulation, "_persist_store", store)
    return store


def test_persist_refuses_before_init(monkeypatch):
    # Without a store (no host has initialised a source) Persist must fail like the daemon's.
    monkeypatch.setattr(emulation, "_persist_store", None)
    with pytest.raises(RuntimeError, match="init"):
        Persist("name")


def test_persist_refuses_double_hash(persist_store):
    with pytest.raises(ValueError, match="##"):
        Persist("a##b")


def test_persist_values_and_types(persist_store):
    p = Persist("src", defaults={"a": 1, "b": "two"})
    assert p.persist_name == "src"
    p["b"] = "changed"
    p["c"] = b"\x00\xff"
    assert Persist("src", defaults={"b": "ignored"})["b"] == "changed"
    assert sorted(p) == ["a", "b", "c"]
    assert p["c"] == b"\x00\xff" and p["a"] == 1
    for bad in (1.5, None, True, ["x"]):
        with pytest.raises(TypeError):
            p["d"] = bad
    with pytest.raises(KeyError):
        p["missing"]
    assert "a" in p and "missing" not in p and 1 not in p
    assert sorted(Persist("other")) == []
    assert set(persist_store.values) == {"src##a", "src##b", "src##c"}


def test_persist_survives_across_hosts(tmp_path):
    class Counts(Idle):
        def init(self, options):
            self.state = Persist(self.persist_name, defaults={"starts": 0, "blob": b""})
            self.state["starts"] += 1
            self.state["blob"] += b"\xff"
            self.starts = self.state["starts"]
            return True

    for expected in (1, 2):
        with SourceHost(Counts, state_dir=str(tmp_path)) as host:
            assert host.source.starts == expected
    with SourceHost(Counts, state_dir=str(tmp_path)) as host:
        assert host.source.state["blob"] == b"\xff\xff\xff"
    with SourceHost(Counts, state_dir=str(tmp_path / "elsewhere")) as host:
        assert host.source.starts == 1


# --------------------------------------------------------------------------------------------
# ack trackers


def _posting(*bookmarks):
    """A source class that posts one message per bookmark, with the given tracker."""

    class Posts(Idle):
        def init(self, options):
            self.acked = []
            self.ack_tracker = self.make_tracker()
            return True

        def run(self):
            for b in bookmarks:
                self.post_message(LogMessage(str(b), bookmark=b))
            self.exit.wait()

    return Posts


def test_instant_ack_tracker_calls_back_per_message():
    cls = _posting("a", "b", "c")
    cls.make_tracker = lambda self: InstantAckTracker(self.acked.append)
    with SourceHost(cls) as host:
        assert host.wait_for(lambda: len(host.source.acked) == 3)
        assert sorted(host.source.acked) == ["a", "b", "c"]


def test_consecutive_ack_tracker_waits_for_predecessors(run_thread):
    # Acks out of order: only the newest bookmark whose predecessors are all acked is reported
    # (a stream position that is safe to save).
    source = Idle()
    acked = []
    source.ack_tracker = ConsecutiveAckTracker(acked.append)
    driver, delivered = make_driver(source, iw=10)
    rt = run_thread(driver)
    for b in ("a", "b", "c"):
        rt.call(lambda b=b: source.post_message(LogMessage(b, bookmark=b)))
    driver.ack(delivered[2])
    assert acked == []
    driver.ack(delivered[0])
    assert acked == ["a"]
    driver.ack(delivered[1])
    assert acked == ["a", "c"]


def test_batched_ack_tracker_by_size(run_thread):
    source = Idle()
    batches = []
    source.ack_tracker = BatchedAckTracker(60_000, 2, batches.append)
    driver, delivered = make_driver(source, iw=10)
    rt = run_thread(driver)
    for b in range(3):
        rt.call(lambda b=b: source.post_message(LogMessage(str(b), bookmark=b)))
    for m in delivered:
        driver.ack(m)
    assert batches == [[0, 1]]
    source.ack_tracker._close()  # what the host does at stop
    assert batches == [[0, 1], [2]]


def test_batched_ack_tracker_by_timeout(run_thread):
    source = Idle()
    batches = []
    source.ack_tracker = BatchedAckTracker(50, 100, batches.append)
    driver, delivered = make_driver(source, iw=10)
    rt = run_thread(driver)
    rt.call(lambda: source.post_message(LogMessage("x", bookmark="x")))
    driver.ack(delivered[0])
    assert batches == []
    assert wait_until(lambda: batches == [["x"]])


def test_bookmark_without_ack_tracker_raises(run_thread):
    driver, _ = make_driver()
    rt = run_thread(driver)
    with pytest.raises(RuntimeError, match="ack_tracker"):
        rt.call(lambda: driver.source.post_message(LogMessage("x", bookmark=1)))


def test_message_without_bookmark_with_a_tracker_raises(run_thread):
    # Both daemons crash (SIGSEGV) on such a post: the emulation must not let it pass.
    source = Idle()
    source.ack_tracker = InstantAckTracker(lambda b: None)
    driver, delivered = make_driver(source)
    rt = run_thread(driver)
    with pytest.raises(RuntimeError, match="bookmark on every message"):
        rt.post("x")
    assert delivered == []


def test_ack_tracker_must_be_a_tracker():
    class Wrong(Idle):
        def init(self, options):
            self.ack_tracker = object()
            return True

    with pytest.raises(SourceInitError, match="ack_tracker"):
        SourceHost(Wrong).start()


# --------------------------------------------------------------------------------------------
# Logger


def test_logger_goes_to_python_logging_syslogng(caplog):
    caplog.set_level(1, logger="syslogng")
    log = Logger()
    log.error("e")
    log.warning("w")
    log.info("i")
    log.debug("d")
    log.trace("t")
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        ("syslogng", logging.ERROR, "e"),
        ("syslogng", logging.WARNING, "w"),
        ("syslogng", logging.INFO, "i"),
        ("syslogng", logging.DEBUG, "d"),
        ("syslogng", 5, "t"),
    ]


# --------------------------------------------------------------------------------------------


def _checkout():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
