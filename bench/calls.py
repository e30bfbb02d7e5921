"""Calls per message on each path: Python calls, C calls, and calls into the daemon's API.

Run by hand from the checkout's root (see docs/benchmarks.md)::

    python bench/calls.py [--code OTHER_CHECKOUT] [--messages 20000]

Each path is driven in one process, without sockets: 64 KiB reads of loggen-like 300-byte
messages (RFC 3164 and RFC 5424, LF-framed) are fed to the path's protocol, and ``sys.setprofile``
counts what runs (``threading.setprofile`` too, for writer threads). Calls into the daemon are
counted by wrapping the ``syslogng`` names a source uses (``LogMessage.parse``, ``msg[name] =``,
``msg[name]``, ``set_*``, ``post_message``, ``close_batch``): inside syslog-ng each is one call
into C, here into the emulation, whose own Python calls are left out of the Python count.

Paths:

* ``daemon, parser native`` and ``daemon, parser syslogsrc``: a ``SyslogSource`` as inside
  syslog-ng 4.8 and as inside 3.38 (the version's features: ``set_source_ipaddress``,
  ``set_transport_name``, ``close_batch`` or not, the clock refreshed once per batch), its
  stream protocol;
* ``hand-written``: the 30-line source of bench/daemon.py (``LineOnlyReceiver``,
  ``LogMessage.parse`` + ``post_message``, ``close_batch`` per read);
* ``twistd``: ``twistd syslogsrc``'s path to JSON lines (protocol, sink, rendering, writer);
* ``plain``: bench/standalone.py's plain receiver (``LineReceiver``, one regex, ``json.dumps``);
* ``UDP``: the same for datagrams (the source's and twistd's datagram protocol, the plain
  ``DatagramProtocol``'s ``datagramReceived``), 1 or 64 datagrams per turn of the reactor.
  Twisted's own read loop (``recvfrom`` per datagram) is not counted: it is the same for all.

``--code`` runs the paths of another checkout (e.g. ``git worktree add /tmp/old <commit>``) for
the "before" column.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import io
import json
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

FRAMES = {
    "rfc3164": b"<38>2026-12-02T10:00:00 localhost prg00000[1234]: seq: %010d, thread: 0000,"
    b" runid: 1764669600, stamp: 2026-12-02T10:00:00 PADDPADDPADDPADDPADDPADDPADDPADDPADDPADD"
    b"PADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADD"
    b"PADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADD",
    "rfc5424": b"<38>1 2026-12-02T10:00:00+00:00 localhost prg00000 1234 - [meta sequenceId="
    b'"%d"] seq: 0000000000, thread: 0000, runid: 1764669600, stamp: 2026-12-02T10:00:00 PADDPADD'
    b"PADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADD"
    b"PADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADD",
}

# The files of the emulation (syslogsrc.emulation and its private parts): a call into them
# stands for a call into the daemon.
EMULATION_FILES = ("syslogsrc/emulation.py", "syslogsrc/_emulated_")

# The syslogng names a source calls; inside the daemon each is one call into C.
DAEMON_CALLS = (
    "parse",
    "__setitem__",
    "__getitem__",
    "set_pri",
    "set_timestamp",
    "set_source_ipaddress",
    "set_recvd_rawmsg_size",
    "post_message",
    "close_batch",
    "__init__",
)


class Counting:
    """sys.setprofile counters of one measured stretch, all threads."""

    def __init__(self, skip_prefixes: tuple[str, ...]) -> None:
        self.py = 0
        self.c = 0
        self.daemon: Counter[str] = Counter()
        self.skip = skip_prefixes
        self._depth_in_daemon = threading.local()

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        depth = getattr(self._depth_in_daemon, "n", 0)
        if event == "call":
            filename = frame.f_code.co_filename
            if depth:
                if event == "call":
                    self._depth_in_daemon.n = depth + 1
                return
            if any(p in filename for p in self.skip):
                self.daemon[frame.f_code.co_name] += 1
                self._depth_in_daemon.n = 1
                return
            self.py += 1
        elif event == "return":
            if depth:
                self._depth_in_daemon.n = depth - 1
        elif event == "c_call" and not depth:
            self.c += 1

    def __enter__(self) -> Counting:
        threading.setprofile(self.profile)
        sys.setprofile(self.profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def _reads(fmt: str, n: int) -> list[bytes]:
    # today's date, as loggen stamps them (the hybrid parser takes stamps without an offset of
    # this month and the ones either side only)
    today = datetime.date.today().isoformat().encode()
    frame = FRAMES[fmt].replace(b"2026-12-02", today)
    lines = b"".join(frame % i + b"\n" for i in range(n))
    return [lines[i : i + 65536] for i in range(0, len(lines), 65536)]


class _Port:
    """What a datagram protocol asks of Twisted's UDP port, without a socket."""

    def __init__(self) -> None:
        import socket

        from twisted.internet.address import IPv4Address

        self.host = IPv4Address("UDP", "127.0.0.1", 5514)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # so-rcvbuf is set on it

    def getHost(self) -> Any:
        return self.host

    def getHandle(self) -> Any:
        return self.socket

    def stopReading(self) -> None:
        pass

    def startReading(self) -> None:
        pass


def _feed_datagrams(
    protocol: Any, clock: Any, fmt: str, n: int, per_turn: int, skip: tuple[str, ...]
) -> Counting:
    """``n`` datagrams (a frame and its LF each, as loggen sends them) from one sender,
    ``per_turn`` of them per wake-up of the reactor, then its turn (``clock.advance(0)``)."""
    port = _Port()
    protocol.makeConnection(port)
    today = datetime.date.today().isoformat().encode()
    frame = FRAMES[fmt].replace(b"2026-12-02", today)
    datagrams = [frame % i + b"\n" for i in range(n)]
    peer = ("192.0.2.7", 40000)
    protocol.datagramReceived(datagrams[0], peer)  # warm (origin, caches)
    clock.advance(0)
    with Counting(skip) as counts:
        for i in range(0, n, per_turn):
            for datagram in datagrams[i : i + per_turn]:
                protocol.datagramReceived(datagram, peer)
            clock.advance(0)
    port.socket.close()
    return counts


def _source_path(fmt: str, n: int, parser: str, version: str, udp: int = 0) -> Counting:
    """A SyslogSource with the daemon's features of ``version``, fed through its protocol
    (``udp``: datagrams, that many per turn of the reactor; else TCP reads)."""
    import importlib

    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from syslogsrc.emulation import ParseOptions, SourceDriver
    from syslogsrc.listen import make_listener, parse_spec
    from syslogsrc.source import SyslogSource

    features = {
        "4.8": {
            "_CLOSE_BATCH": True,
            "_SET_SOURCE_IP": True,
            "_STALE_CLOCK": True,
            "_REFRESH_CLOCK": True,
            "_RAWMSG_SIZE": False,
        },
        "3.38": {
            "_CLOSE_BATCH": False,
            "_SET_SOURCE_IP": False,
            "_STALE_CLOCK": True,
            "_REFRESH_CLOCK": True,
            "_RAWMSG_SIZE": False,
        },
    }[version]
    # Each module that reads a feature keeps it as a module constant, decided at import: set
    # in every one that has it (this checkout's modules, or an older checkout's source.py).
    modules = []
    for name in (
        "source",
        "_posting",
        "_twisted_source",
        "_building",
        "_daemon_builders",
        "_syslog_source",
    ):
        try:
            modules.append(importlib.import_module(f"syslogsrc.{name}"))
        except ImportError:
            continue
    saved = []
    for module in modules:
        for name, value in features.items():
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, value)
    try:
        src = SyslogSource()
        driver = SourceDriver(src, log_iw_size=10 * n, consumer=lambda msg: None)
        driver.run_thread = threading.get_ident()
        assert src.init({"listen": "tcp:5514", "parser": parser})
        src.parse_options = ParseOptions("auto")
        clock = Clock()
        if parser == "native":  # checkouts before 41f2de1 checked each frame for a stamp
            shapes_read = getattr(modules[0], "_stamp_shapes_read", None) or getattr(
                importlib.import_module("syslogsrc._daemon_time"), "stamp_shapes_read", None
            )
            if shapes_read is not None:
                src._stamp_read = shapes_read(src.parse_options)
        if parser == "hybrid":  # as inside a daemon whose parse options read every shape alike
            from syslogsrc import _daemon_parse

            src._c_shapes = {"auto": _daemon_parse.SHAPES}
            src._msgformat_pair = version == "4.8"
        elif hasattr(src, "_msgformat_pair"):
            src._msgformat_pair = version == "4.8"
        src._transport_pair = version == "3.38"
        if version == "4.8":
            src.set_transport_name("tcp")
        if hasattr(src, "_uses_source_ip_api"):
            src._set_source_ip = False  # the daemons' default: set_source_ipaddress() leaks
        if udp:
            if version == "4.8":
                src.set_transport_name("udp")
            listener = make_listener(parse_spec("udp:5514"), clock, src, src.options.listener)
            return _feed_datagrams(listener.protocol, clock, fmt, n, udp, EMULATION_FILES)
        listener = make_listener(parse_spec("tcp:5514"), clock, src, src.options.listener)
        factory = listener.tracker.wrappedFactory
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        protocol.makeConnection(
            StringTransport(
                hostAddress=IPv4Address("TCP", "127.0.0.1", 5514),
                peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
            )
        )
        reads = _reads(fmt, n)
        protocol.dataReceived(reads[0][: reads[0].index(b"\n") + 1])  # warm (origin, caches)
        with Counting(EMULATION_FILES) as counts:
            for chunk in reads:
                protocol.dataReceived(chunk)
        return counts
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


HAND = """
from twisted.protocols.basic import LineOnlyReceiver
from syslogsrc.emulation import LogMessage

class Lines(LineOnlyReceiver):
    delimiter = b"\\n"
    MAX_LENGTH = 65536

    def lineReceived(self, line):
        source = self.factory.source
        source.post_message(LogMessage.parse(line, source.parse_options))

    def dataReceived(self, data):
        super().dataReceived(data)
        if self.factory.batches:
            self.factory.source.close_batch()
"""


def _hand_path(fmt: str, n: int) -> Counting:
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import StringTransport

    from syslogsrc.emulation import LogSource, ParseOptions, SourceDriver

    namespace: dict[str, Any] = {}
    exec(HAND, namespace)

    class Hand(LogSource):
        pass

    src = Hand()
    driver = SourceDriver(src, log_iw_size=10 * n, consumer=lambda msg: None)
    driver.run_thread = threading.get_ident()
    driver.auto_close_batches = False
    src.parse_options = ParseOptions("auto")
    factory = Factory.forProtocol(namespace["Lines"])
    factory.source, factory.batches = src, True
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    with Counting(EMULATION_FILES) as counts:
        for chunk in _reads(fmt, n):
            protocol.dataReceived(chunk)
    return counts


class _Reactor:
    """A Clock for the listener and the sink; runs callFromThread calls at once (the writer's
    acknowledgements)."""

    def __init__(self) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.callLater = self.clock.callLater
        self.seconds = self.clock.seconds
        self.lock = threading.Lock()

    def callFromThread(self, fn: Any, *a: Any) -> None:
        with self.lock:
            fn(*a)


def _twistd_path(fmt: str, n: int) -> Counting:
    """What twistd's reactor thread and its writer thread run per message."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from syslogsrc.listen import make_listener, parse_spec
    from syslogsrc.outputs import JsonLinesOutput

    reactor = _Reactor()
    output = JsonLinesOutput(io.BytesIO())
    try:
        from syslogsrc.sinks import OutputSink
    except ImportError:
        return _twistd_path_before(fmt, n, output)
    from syslogsrc.source import SyslogSource

    src = SyslogSource()
    assert src.init({"listen": "tcp:5514"})
    sink = OutputSink(output, reactor, high_water=10 * n)
    listener = make_listener(parse_spec("tcp:5514"), reactor.clock, sink, src.options.listener)
    protocol = listener.tracker.wrappedFactory.buildProtocol(None)
    protocol.makeConnection(
        StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5514),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
        )
    )
    reads = _reads(fmt, n)
    with Counting(("<none>",)) as counts:
        for chunk in reads:
            protocol.dataReceived(chunk)
            reactor.clock.advance(0)  # the turn of the reactor ends: the batch goes to the writer
        sink._writer.close()
    assert output.written == n, output.written
    return counts


def _twistd_udp_path(fmt: str, n: int, per_turn: int) -> Counting:
    """twistd's path to JSON lines for datagrams, ``per_turn`` per wake-up."""

    from syslogsrc.listen import make_listener, parse_spec
    from syslogsrc.outputs import JsonLinesOutput
    from syslogsrc.sinks import OutputSink
    from syslogsrc.source import SyslogSource

    reactor = _Reactor()
    output = JsonLinesOutput(io.BytesIO())
    src = SyslogSource()
    assert src.init({"listen": "udp:5514"})
    sink = OutputSink(output, reactor, high_water=10 * n)
    listener = make_listener(parse_spec("udp:5514"), reactor.clock, sink, src.options.listener)
    counts = _feed_datagrams(listener.protocol, reactor.clock, fmt, n, per_turn, ("<none>",))
    sink._writer.close()
    return counts


def _standalone() -> Any:
    """bench/standalone.py, for its plain receiver's record."""
    spec = importlib.util.spec_from_file_location(
        "standalone", Path(__file__).resolve().parent / "standalone.py"
    )
    assert spec is not None and spec.loader is not None
    standalone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standalone)
    return standalone


def _plain_udp_path(fmt: str, n: int) -> Counting:
    standalone = _standalone()
    out = io.BytesIO()

    def datagram_received(data: bytes, addr: object) -> None:  # bench/standalone.py's
        out.write(standalone.plain_record(data.rstrip(b"\n")))

    today = datetime.date.today().isoformat().encode()
    frame = FRAMES[fmt].replace(b"2026-12-02", today)
    datagrams = [frame % i + b"\n" for i in range(n)]
    with Counting(("<none>",)) as counts:
        for datagram in datagrams:
            datagram_received(datagram, ("192.0.2.7", 40000))
    return counts


def _twistd_path_before(fmt: str, n: int, output: Any) -> Counting:
    """Before the direct path: SyslogSource in the emulation, the driver, a writer thread."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from syslogsrc.emulation import ParseOptions, SourceDriver
    from syslogsrc.host import _Consumer
    from syslogsrc.listen import make_listener, parse_spec
    from syslogsrc.source import SyslogSource

    src = SyslogSource()
    consumer = _Consumer(output, [])
    driver = SourceDriver(
        src,
        log_iw_size=10 * n,
        consumer=lambda msg: consumer.put(msg, driver),
        on_batch=consumer.batch,
        keep_hostname=True,
    )
    driver.run_thread = threading.get_ident()
    assert src.init({"listen": "tcp:5514"})
    src.parse_options = ParseOptions("auto")
    driver.auto_close_batches = False
    clock = Clock()
    src._reactor = clock
    listener = make_listener(parse_spec("tcp:5514"), clock, src, src.options.listener)
    protocol = listener.tracker.wrappedFactory.buildProtocol(None)
    protocol.makeConnection(
        StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 5514),
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
        )
    )
    with Counting(("<none>",)) as counts:
        for chunk in _reads(fmt, n):
            protocol.dataReceived(chunk)
        consumer.close()
    return counts


def _plain_path(fmt: str, n: int) -> Counting:
    standalone = _standalone()
    from twisted.protocols.basic import LineReceiver

    out = io.BytesIO()

    class Lines(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 65536

        def lineReceived(self, line: bytes) -> None:
            out.write(standalone.plain_record(line))

    protocol = Lines()
    from twisted.internet.testing import StringTransport

    protocol.makeConnection(StringTransport())
    with Counting(("<none>",)) as counts:
        for chunk in _reads(fmt, n):
            protocol.dataReceived(chunk)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--code", type=Path, default=None, help="another checkout's syslogsrc")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args(argv)
    # bench/http.py would hide the standard library's http (Twisted imports it)
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    root = args.code or here.parent
    sys.path.insert(0, str(root))
    import syslogsrc

    print(f"syslogsrc from {Path(syslogsrc.__file__).parent}", file=sys.stderr)
    n = args.messages
    paths = {
        "daemon 4.8, parser native": lambda f: _source_path(f, n, "native", "4.8"),
        "daemon 3.38, parser native": lambda f: _source_path(f, n, "native", "3.38"),
        "daemon 4.8, parser syslogsrc": lambda f: _source_path(f, n, "syslogsrc", "4.8"),
        "daemon 3.38, parser syslogsrc": lambda f: _source_path(f, n, "syslogsrc", "3.38"),
        "daemon 4.8, parser hybrid": lambda f: _source_path(f, n, "hybrid", "4.8"),
        "daemon 3.38, parser hybrid": lambda f: _source_path(f, n, "hybrid", "3.38"),
        "hand-written source (daemon)": lambda f: _hand_path(f, n),
        "twistd syslogsrc -> JSON lines": lambda f: _twistd_path(f, n),
        "plain LineReceiver -> JSON lines": lambda f: _plain_path(f, n),
        # UDP: a datagram per wake-up of the reactor (a slow sender), and 64 (a busy one)
        "UDP, daemon 4.8, parser native, 1 datagram a turn": lambda f: _source_path(
            f, n, "native", "4.8", udp=1
        ),
        "UDP, daemon 4.8, parser native, 64 a turn": lambda f: _source_path(
            f, n, "native", "4.8", udp=64
        ),
        "UDP, daemon 3.38, parser native, 64 a turn": lambda f: _source_path(
            f, n, "native", "3.38", udp=64
        ),
        "UDP, daemon 4.8, parser hybrid, 64 a turn": lambda f: _source_path(
            f, n, "hybrid", "4.8", udp=64
        ),
        "UDP, twistd -> JSON lines, 1 datagram a turn": lambda f: _twistd_udp_path(f, n, 1),
        "UDP, twistd -> JSON lines, 64 a turn": lambda f: _twistd_udp_path(f, n, 64),
        "UDP, plain DatagramProtocol -> JSON lines": lambda f: _plain_udp_path(f, n),
    }
    results: dict[str, dict[str, Any]] = {}
    print("| path | format | Python calls/msg | C calls/msg | daemon calls/msg (which) |")
    print("|---|---|---|---|---|")
    for name, run in paths.items():
        for fmt in ("rfc3164", "rfc5424"):
            try:
                counts = run(fmt)
            except Exception as exc:  # a path the other checkout lacks
                print(f"| {name} | {fmt} | - | - | not in this checkout ({exc}) |")
                continue
            daemon = {k: v / n for k, v in counts.daemon.items() if k in DAEMON_CALLS}
            which = ", ".join(f"{k} {v:.2f}" for k, v in sorted(daemon.items()) if v >= 0.005)
            total = sum(daemon.values())
            results[f"{name} | {fmt}"] = {
                "python": counts.py / n,
                "c": counts.c / n,
                "daemon": total,
                "daemon_calls": daemon,
            }
            daemon_text = f"{total:.2f} ({which})" if total else "-"
            print(f"| {name} | {fmt} | {counts.py / n:.1f} | {counts.c / n:.1f} | {daemon_text} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
