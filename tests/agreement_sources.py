"""Tiny ``LogSource`` scenarios that run unchanged in the real daemon and in ``SourceHost``.

Each scenario class does one thing in ``run()`` and *records what it observes* (exception types
and texts, whether a post blocked, in which thread ``suspend()``/``wakeup()`` ran, ...), then
posts one result message ``RESULT <json>``. ``tests/test_agreement.py`` runs every scenario in the
daemon (results read back from a file destination) and in the emulation (results read from the
host's output) and asserts the same observations.

The names come from :mod:`syslogsrc.runtime`, so inside syslog-ng they are the daemon's own C
types, and everywhere else the emulation's.

The window is controlled from both sides by a *gate*: a file holding an integer, the number of
messages allowed through so far (cumulative); no file means everything passes. The daemon's side
of the gate is :class:`GateDestination` (a ``python()`` destination in a ``flags(flow-control)``
log path, so a message is acknowledged only when its ``send()`` returns); the emulation's is
:class:`GateOutput` (a SourceHost output: the host acknowledges a message when ``write()``
returns). Either way, a closed gate stalls acknowledgements and so empties the source's window.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time

from syslogsrc.runtime import (
    IN_DAEMON,
    ConsecutiveAckTracker,
    InstantAckTracker,
    LogMessage,
    LogSource,
)

_DestinationBase = object
if IN_DAEMON:
    try:  # 4.x insists that a python() destination subclasses it; 3.38.1 does not export it
        from syslogng import LogDestination as _DestinationBase
    except ImportError:
        pass

RESULT_PREFIX = "RESULT "

#: how long a scenario waits for something that should happen (suspend, wakeup, unblock)
PATIENCE = 5.0
#: a post that takes longer than this blocked
BLOCKED = 0.3
#: how long a stalled delivery waits for the gate at most (so that no daemon can hang forever)
GATE_LIMIT = 20.0

#: idents of the threads that delivered messages (GateDestination.send / GateOutput.write): the
#: daemon's destination worker or the host's output thread, i.e. the threads that acknowledge
CONSUMER_THREADS: set[int] = set()
#: MESSAGE of every message that passed the gate, in order
DELIVERED: list[str] = []


# --------------------------------------------------------------------------------------------
# the gate


def gate_set(path: str, allowed: int) -> None:
    """Let ``allowed`` messages through in total (atomically, readers never see a torn file)."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(allowed))
    os.replace(tmp, path)


def gate_open(path: str) -> None:
    """Let everything through."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _allowed(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return None
    except ValueError:  # pragma: no cover - os.replace makes a torn read impossible
        return 0


class _Gate:
    def __init__(self, path: str) -> None:
        self.path = path
        self.passed = 0

    def wait_turn(self, msg) -> None:
        deadline = time.monotonic() + GATE_LIMIT
        while time.monotonic() < deadline:
            allowed = _allowed(self.path)
            if allowed is None or self.passed < allowed:
                break
            time.sleep(0.01)
        self.passed += 1
        CONSUMER_THREADS.add(threading.get_ident())
        DELIVERED.append(_text(msg["MESSAGE"]))


class GateDestination(_DestinationBase):
    """The daemon's side: ``destination { python(class("tests.agreement_sources.GateDestination")
    options("gate" "PATH")); };`` in a log path with ``flags(flow-control)``."""

    def init(self, options):
        self.gate = _Gate(_text(options["gate"]))
        return True

    def deinit(self):
        pass

    def send(self, msg):
        self.gate.wait_turn(msg)
        return True


class GateOutput:
    """The emulation's side: a SourceHost output that passes the gate, then keeps the fields the
    daemon's file destination writes (see :func:`render`)."""

    def __init__(self, path: str) -> None:
        self.gate = _Gate(path)
        self.lines: list[dict[str, str]] = []

    def write(self, msg) -> None:
        self.gate.wait_turn(msg)
        self.lines.append(render(msg))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


#: the daemon's file destination template: the same fields as :func:`render`
FILE_TEMPLATE = (
    "$(format-json MESSAGE=$MESSAGE TRANSPORT=$TRANSPORT SOURCEIP=$SOURCEIP PRI=$PRI"
    " HOST=$HOST HOST_FROM=$HOST_FROM ISODATE=$ISODATE)\\n"
)
#: what :func:`render` and the file destination write
FIELDS = ("MESSAGE", "TRANSPORT", "SOURCEIP", "PRI", "HOST", "HOST_FROM", "ISODATE")


def render(msg) -> dict[str, str]:
    """What the daemon's file destination writes for a message (empty values left out, as
    format-json does)."""
    out = {}
    for name in FIELDS:
        try:
            value = msg[name]
        except KeyError:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if value not in ("", None):
            out[name] = str(value)
    return out


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _exc(exc: BaseException | None) -> list[str] | None:
    return None if exc is None else [type(exc).__name__, str(exc)]


def _caught(func) -> Exception | None:
    """The exception ``func()`` raised, or None if it returned."""
    try:
        func()
    except Exception as exc:
        return exc
    return None


def _raised(func) -> str | None:
    """The name of the exception class ``func()`` raised, or None if it returned."""
    exc = _caught(func)
    return None if exc is None else type(exc).__name__


# --------------------------------------------------------------------------------------------
# the scenarios


class Scenario(LogSource):
    """Runs :meth:`scenario` in ``run()``, posts ``RESULT <observations>``, waits for exit.

    Options: ``gate`` (the gate file), ``report`` (a file for what cannot be posted). A
    scenario that sets :attr:`window` (its ``log-iw-size``) closes the gate in ``init()`` and
    works it; for the others it stays open.
    """

    #: the log-iw-size the scenario needs; None: the default (100), and no gate
    window = None

    def __init__(self):
        super().__init__()
        self.obs = {}
        self.exit_requested = threading.Event()

    def init(self, options):
        self.options = {str(k): _text(v) for k, v in options.items()}
        self.gate = self.options.get("gate")
        if self.window is not None:
            gate_set(self.gate, 0)
        return True

    def run(self):
        self.run_thread = threading.get_ident()
        try:
            self.scenario()
        except Exception as exc:  # an observation too: the test shows it
            self.obs["scenario_error"] = repr(exc)
        if self.gate:
            gate_open(self.gate)
        result = LogMessage(RESULT_PREFIX + json.dumps(self.obs, sort_keys=True))
        if getattr(self, "ack_tracker", None) is not None:
            # with an ack tracker every message needs a bookmark: 4.8.1 aborts otherwise
            result.set_bookmark("result")
        self.post_message(result)
        if not getattr(self, "auto_close_batches", True):
            # 4.8.1 aborts at shutdown (assertion on batch callbacks) when run() leaves a
            # batch open, and delivers nothing of it
            self.close_batch()
        self.exit_requested.wait()

    def request_exit(self):
        self.exit_requested.set()

    def scenario(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def fill(self, text):
        self.post_message(LogMessage(f"fill {text}"))

    def in_thread(self, func):
        """Call ``func`` in a new thread; return the exception it raised (or None)."""
        result = []

        def target():
            try:
                func()
            except Exception as exc:
                result.append(exc)
            else:
                result.append(None)

        t = threading.Thread(target=target)
        t.start()
        t.join(PATIENCE)
        return result[0] if result else TimeoutError("thread did not finish")

    def whose(self, ident):
        """Which thread ``ident`` is, in words that mean the same in the daemon and the host."""
        if ident == self.run_thread:
            return "run"
        if ident == threading.main_thread().ident:
            return "main"
        return "ack"

    def later(self, delay, func):
        t = threading.Timer(delay, func)
        t.daemon = True
        t.start()
        return t


class ThreadCheck(Scenario):
    """post_message from init(), from another thread, from run(); a non-LogMessage."""

    def init(self, options):
        self.init_error = _caught(lambda: self.post_message(LogMessage("from init")))
        return super().init(options)

    def scenario(self):
        self.obs["from_init"] = _exc(self.init_error)
        self.obs["from_thread"] = _exc(self.in_thread(lambda: self.fill("from thread")))
        self.obs["from_run"] = _exc(_caught(lambda: self.fill("from run")))
        try:
            self.post_message("not a LogMessage")
        except Exception as exc:
            # the text names the C type in the daemon (syslogng./_syslogng.LogMessage)
            self.obs["not_a_message"] = type(exc).__name__
            self.obs["not_a_message_text"] = str(exc)
        else:
            self.obs["not_a_message"] = None


class Lifecycle(Scenario):
    """Threads of init()/run(), parse_options before and after init(), persist_name, options."""

    def __init__(self):
        super().__init__()
        self.init_thread = None

    def init(self, options):
        self.init_thread = threading.get_ident()
        self.parse_options_in_init = getattr(self, "parse_options", None)
        self.option_types = sorted({type(v).__name__ for v in options.values()})
        return super().init(options)

    def scenario(self):
        self.obs["init_in_main_thread"] = self.init_thread == threading.main_thread().ident
        self.obs["run_in_other_thread"] = self.run_thread != self.init_thread
        self.obs["parse_options_in_init"] = self.parse_options_in_init is None
        self.obs["parse_options_in_run"] = getattr(self, "parse_options", None) is not None
        self.obs["persist_name"] = self.persist_name
        self.obs["option_types"] = self.option_types


class NamedLifecycle(Lifecycle):
    """Lifecycle with persist-name("agree-named"): persist_name is python-source.agree-named."""

    def generate_persist_name(self, options):  # persist-name() wins over it
        return "generated"


class Blocking(Scenario):
    """Blocking mode (no suspend()): the post that empties the window blocks until a slot frees."""

    window = 3

    def scenario(self):
        size = self.window
        blocked = []
        for i in range(size):
            if i == size - 1:  # the last slot: one delivery later, a slot frees
                self.later(0.6, lambda: gate_set(self.gate, 1))
            start = time.monotonic()
            self.fill(i)
            blocked.append(time.monotonic() - start > BLOCKED)
        self.obs["blocked"] = blocked
        # the window is full again (one freed, one taken): posting now blocks again
        self.later(0.6, lambda: gate_set(self.gate, 2))
        start = time.monotonic()
        self.fill("after")
        self.obs["blocked_again"] = time.monotonic() - start > BLOCKED


class BlockingExit(Scenario):
    """A post blocked on an empty window returns when exit is requested (gate still closed).

    Results go to the ``report`` file: after exit nothing can be posted (the window is empty)."""

    window = 2

    def request_exit(self):
        self.exit_at = time.monotonic()
        super().request_exit()

    def run(self):
        self.run_thread = threading.get_ident()
        size = self.window
        for i in range(size - 1):
            self.fill(i)
        start = time.monotonic()
        self.fill("blocks")  # blocks until request_exit()
        end = time.monotonic()
        exit_at = getattr(self, "exit_at", None)
        self.obs["returned_after_exit"] = exit_at is not None and exit_at <= end
        self.obs["returned_soon_after_exit"] = exit_at is not None and end - exit_at < 2.0
        self.obs["blocked"] = end - start > BLOCKED
        # a post now finds the window empty: dropped, no exception
        self.obs["post_after_exit"] = _exc(_caught(lambda: self.fill("after exit")))
        with open(self.options["report"], "w") as f:
            json.dump(self.obs, f, sort_keys=True)
        gate_open(self.gate)  # let the daemon's destination finish, so that it can stop


class Suspending(Scenario):
    """Suspend/wakeup mode: suspend() in the run() thread inside the post that empties the
    window, a post while suspended is dropped, wakeup() from the acknowledging thread."""

    window = 3

    def __init__(self):
        super().__init__()
        self.events = []
        self.posting = None
        self.woken = threading.Event()

    def suspend(self):
        self.events.append(("suspend", threading.get_ident(), self.posting))

    def wakeup(self):
        self.events.append(("wakeup", threading.get_ident(), self.posting))
        self.woken.set()

    def scenario(self):
        size = self.window
        for i in range(size):
            self.posting = i
            self.fill(i)
            self.posting = None
        try:
            self.fill("while suspended")  # must not arrive
        except Exception as exc:
            self.obs["post_while_suspended"] = _exc(exc)
        else:
            self.obs["post_while_suspended"] = None
        self.obs["woken_before_ack"] = self.woken.is_set()
        gate_set(self.gate, 1)  # one delivery: the window goes 0 -> 1
        self.woken.wait(PATIENCE)
        time.sleep(0.2)  # a second (wrong) suspend/wakeup would show up here
        self.obs["events"] = [name for name, _, _ in self.events]
        suspends = [e for e in self.events if e[0] == "suspend"]
        wakeups = [e for e in self.events if e[0] == "wakeup"]
        self.obs["suspended_in_post"] = [e[2] for e in suspends]
        self.obs["suspend_in_run_thread"] = all(e[1] == self.run_thread for e in suspends)
        # "ack": a syslog-ng thread that acknowledges messages. In 3.38.1 that is the worker that
        # ran the destination's send() in most runs, another worker thread in some.
        self.obs["wakeup_thread"] = sorted({self.whose(e[1]) for e in wakeups})


class WakeupThreshold(Scenario):
    """How many acknowledgements a suspended source needs before wakeup() (the window is
    ``window``; the gate lets one more message through at a time)."""

    window = 8

    def __init__(self):
        super().__init__()
        self.suspended = threading.Event()
        self.woken = threading.Event()

    def suspend(self):
        self.suspended.set()

    def wakeup(self):
        self.woken.set()

    def scenario(self):
        size = self.window
        for i in range(size):
            self.fill(i)
        self.obs["suspended"] = self.suspended.is_set()
        for acked in range(1, size + 1):
            gate_set(self.gate, acked)
            if self.woken.wait(0.5):
                self.obs["acks_before_wakeup"] = acked
                break
        else:
            self.obs["acks_before_wakeup"] = None


class FastPath(Scenario):
    """log-iw-size(1) and an open gate: the destination may acknowledge before post_message()
    returns. A source that waits for wakeup() after each suspend() must never be left waiting
    (a wakeup may also come without a suspend, or be stale: neither is compared)."""

    window = 1
    count = 30

    def __init__(self):
        super().__init__()
        self.may_post = threading.Event()
        self.may_post.set()

    def init(self, options):
        ok = super().init(options)
        gate_open(self.gate)
        return ok

    def suspend(self):
        self.may_post.clear()

    def wakeup(self):
        self.may_post.set()

    def scenario(self):
        stuck = 0
        for i in range(self.count):
            if not self.may_post.wait(2.0):
                stuck += 1
                self.may_post.set()
            self.fill(f"fast {i}")
        self.obs["stuck"] = stuck
        self.may_post.wait(2.0)


class SuspendedExit(Scenario):
    """Asked to exit while suspended (the gate stays closed): is wakeup() called, from where?

    Results go to the ``report`` file (nothing can be posted with an empty window)."""

    window = 2

    def __init__(self):
        super().__init__()
        self.events = []
        self.suspended = threading.Event()

    def suspend(self):
        self.events.append(("suspend", threading.get_ident()))
        self.suspended.set()

    def wakeup(self):
        self.events.append(("wakeup", threading.get_ident()))

    def request_exit(self):
        self.events.append(("request_exit", threading.get_ident()))
        super().request_exit()

    def run(self):
        self.run_thread = threading.get_ident()
        for i in range(self.window):
            self.fill(i)
        self.obs["suspended"] = self.suspended.is_set()
        self.exit_requested.wait()
        time.sleep(0.5)  # a wakeup that belongs to the exit comes now
        self.obs["events"] = [name for name, _ in self.events]
        self.obs["threads"] = [self.whose(ident) for _, ident in self.events]
        with open(self.options["report"], "w") as f:
            json.dump(self.obs, f, sort_keys=True)
        gate_open(self.gate)


class InstantAcks(Scenario):
    """InstantAckTracker: the callback gets each bookmark, in a thread that acknowledges."""

    def init(self, options):
        self.acked = []
        self.ack_threads = set()
        self.ack_tracker = InstantAckTracker(self.on_ack)
        return super().init(options)

    def on_ack(self, bookmark):
        self.acked.append(bookmark)
        self.ack_threads.add(threading.get_ident())

    def scenario(self):
        for i in range(3):
            msg = LogMessage(f"fill ack {i}")
            msg.set_bookmark(f"b{i}")
            self.post_message(msg)
        deadline = time.monotonic() + PATIENCE
        while len(self.acked) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.obs["acked"] = sorted(self.acked)
        # the daemon acknowledges in the destination's thread, or in the run() thread itself when
        # the destinations were done before post_message() returned: never in the main thread
        self.obs["ack_in_main_thread"] = any(self.whose(t) == "main" for t in self.ack_threads)


class ConsecutiveAcks(InstantAcks):
    """ConsecutiveAckTracker: acknowledged in order, the callback gets every bookmark."""

    def init(self, options):
        ok = super().init(options)
        self.ack_tracker = ConsecutiveAckTracker(self.on_ack)
        return ok

    def scenario(self):
        super().scenario()
        self.obs["acked_in_order"] = self.acked


class AckWithoutBookmark(Scenario):
    """With an ack tracker, a message without a bookmark: the daemon crashes (not a scenario
    to compare, see test_agreement.test_message_without_bookmark_crashes_the_daemon)."""

    def init(self, options):
        self.ack_tracker = InstantAckTracker(lambda bookmark: None)
        return super().init(options)

    def scenario(self):
        time.sleep(1.0)  # after the daemon's start-up, so that the crash is not taken for it
        try:
            self.fill("without bookmark")
        except Exception as exc:
            self.obs["post"] = _exc(exc)


class PersistRules(Scenario):
    """generate_persist_name(), then Persist: defaults, types, ``##``, missing keys."""

    def generate_persist_name(self, options):
        return "agreement"

    def init(self, options):
        from syslogsrc.runtime import Persist

        # usable from init() on; 3.38.1 aborts here unless the config has a python {} block
        self.state = Persist(self.persist_name, defaults={"n": 1, "s": "x", "b": b"\xff"})
        return super().init(options)

    def scenario(self):
        from syslogsrc.runtime import Persist

        self.obs["persist_name"] = self.persist_name
        state = self.state
        self.obs["defaults"] = {k: repr(state[k]) for k in ("n", "s", "b")}
        state["n"] = state["n"] + 1
        state["s"] = "ü"
        self.obs["after_set"] = {k: repr(state[k]) for k in ("n", "s")}
        self.obs["keys"] = sorted(state)
        for name, value in (("float", 1.5), ("none", None), ("list", ["x"])):
            self.obs[f"set_{name}"] = _raised(lambda n=name, v=value: state.__setitem__(n, v))
        try:
            state["missing"]
        except Exception as exc:
            self.obs["missing"] = type(exc).__name__
        self.obs["double_hash"] = _raised(lambda: Persist("a##b"))


class ValuesAsBytes(Scenario):
    """str in, bytes out; a posted message is read-only (where the daemon makes it so)."""

    def scenario(self):
        msg = LogMessage("hello")
        msg["NAME"] = "value"
        msg[b"BNAME"] = b"\xff\xfe"
        self.obs["str_in_bytes_out"] = repr(msg["NAME"])
        self.obs["bytes_kept"] = repr(msg["BNAME"])
        self.obs["message"] = repr(msg["MESSAGE"])
        self.obs["keys_are_bytes"] = all(isinstance(k, bytes) for k in msg.keys())
        self.obs["keys_have_name"] = b"NAME" in msg.keys()
        bad = 1.5 if not _typed_values() else object()
        self.obs["unsupported_type"] = _raised(lambda: msg.__setitem__("BAD", bad))
        self.post_message(msg)
        self.obs["set_after_post"] = _raised(lambda: msg.__setitem__("AFTER", "x"))


class Hostnames(Scenario):
    """HOST is replaced by HOST_FROM (keep-hostname(no), the default); without a source address
    HOST_FROM is the local host name."""

    def scenario(self):
        msg = LogMessage("fill hostnames")
        msg["HOST"] = "claimed.example"
        self.post_message(msg)
        self.obs["local_hostname"] = socket.gethostname()


class Timestamps(Scenario):
    """set_timestamp() with a naive and with aware datetimes: the file shows $ISODATE (the test
    runs both sides under TZ=Asia/Kolkata, +05:30)."""

    STAMPS = {
        "naive": dt.datetime(2024, 1, 15, 12, 0, 0),
        "utc": dt.datetime(2024, 1, 15, 12, 0, 0, tzinfo=dt.UTC),
        "plus2": dt.datetime(2024, 1, 15, 12, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "minus5": dt.datetime(2024, 1, 15, 12, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    }

    def scenario(self):
        for name, stamp in self.STAMPS.items():
            msg = LogMessage(f"fill stamp {name}")
            msg.set_timestamp(stamp)
            if hasattr(msg, "get_timestamp"):
                self.obs[f"get_timestamp_{name}"] = msg.get_timestamp().isoformat()
            self.post_message(msg)


# -- 4.x rules: each records "supported" first; the test skips what the daemon lacks ----------


def _typed_values():
    return hasattr(LogMessage, "get_pri")


class Batches(Scenario):
    """close_batch() only from the run() thread; auto_close_batches reset after __init__."""

    def __init__(self):
        super().__init__()
        self.auto_close_batches = False  # the daemon resets this right after __init__

    def init(self, options):
        self.auto_in_init = getattr(self, "auto_close_batches", None)
        self.auto_close_batches = False  # read after init(): this one counts
        return super().init(options)

    def scenario(self):
        self.obs["supported"] = hasattr(self, "close_batch")
        if not self.obs["supported"]:
            return
        self.obs["auto_close_batches_in_init"] = self.auto_in_init
        self.fill("batched")
        time.sleep(0.5)
        self.obs["delivered_before_close_batch"] = "fill batched" in DELIVERED
        try:
            self.close_batch()
        except Exception as exc:
            self.obs["close_batch_in_run"] = _exc(exc)
        else:
            self.obs["close_batch_in_run"] = None
        time.sleep(0.5)
        self.obs["delivered_after_close_batch"] = "fill batched" in DELIVERED
        self.obs["close_batch_in_thread"] = _exc(self.in_thread(self.close_batch))


class Transport(Scenario):
    """set_transport_name() overwrites TRANSPORT on every later post."""

    def scenario(self):
        self.obs["supported"] = hasattr(self, "set_transport_name")
        if not self.obs["supported"]:
            return
        self.set_transport_name("agreement+test")
        msg = LogMessage("fill transport")
        msg["TRANSPORT"] = "set-by-message"
        self.post_message(msg)


class MessageApi4(Scenario):
    """get_pri(), set_source_ipaddress(), typed values, KeyError for unset names (4.x)."""

    def scenario(self):
        self.obs["supported"] = hasattr(LogMessage, "get_pri")
        if not self.obs["supported"]:
            return
        msg = LogMessage("fill api")
        msg.set_pri(165)
        self.obs["get_pri"] = msg.get_pri()
        values = {"INT": 5, "FLOAT": 1.5, "TRUE": True, "NONE": None, "LIST": ["a", b"b"]}
        for name, value in values.items():
            msg[name] = value
        self.obs["typed"] = {name: repr(msg[name]) for name in values}
        self.obs["unset"] = _raised(lambda: msg["UNSET"])
        if hasattr(LogMessage, "get_as_str"):
            self.obs["get_default"] = msg.get("UNSET", "dflt")
            self.obs["get_as_str"] = msg.get_as_str("INT")
        if hasattr(msg, "set_source_ipaddress"):
            self.obs["ip_ok"] = msg.set_source_ipaddress("192.0.2.7", 5514)
            self.obs["ip_bad"] = msg.set_source_ipaddress("not an address")
        self.post_message(msg)
        self.obs["set_after_post"] = _raised(lambda: msg.__setitem__("AFTER", "x"))


SCENARIOS = {
    cls.__name__: cls
    for cls in (
        ThreadCheck,
        Lifecycle,
        NamedLifecycle,
        Blocking,
        BlockingExit,
        Suspending,
        WakeupThreshold,
        FastPath,
        SuspendedExit,
        InstantAcks,
        ConsecutiveAcks,
        PersistRules,
        ValuesAsBytes,
        Hostnames,
        Timestamps,
        Batches,
        Transport,
        MessageApi4,
    )
}


# -- for the command-line tests of syslogsrc.host (not agreement scenarios) -------------------


class FailingInit(LogSource):
    """init() returns False."""

    def init(self, options):
        return False

    def run(self):  # pragma: no cover - never started
        pass

    def request_exit(self):  # pragma: no cover
        pass


class Ticker(LogSource):
    """Posts ``count`` messages ``tick <n>`` (option, default 3), then waits for exit."""

    def __init__(self):
        super().__init__()
        self.exit_requested = threading.Event()

    def init(self, options):
        self.count = int(_text(options.get("count", "3")))
        return True

    def run(self):
        for n in range(self.count):
            msg = LogMessage(f"tick {n}")
            msg["N"] = str(n)
            self.post_message(msg)
        self.exit_requested.wait()

    def request_exit(self):
        self.exit_requested.set()
