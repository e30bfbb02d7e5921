"""Inside syslog-ng: SyslogSource against the daemon's own network sources, side by side.

Run by hand from the checkout's root (as root when the syslog-ng 4 chroot is to be used; see
docs/benchmarks.md)::

    python bench/daemon.py [--duration 10] [--runs 3] [--daemons host-3.38,chroot-4.8]
                           [--scenarios tcp,udp,tls] [--connections 1,10] [--pin]

Each measurement starts a fresh daemon (``tests/daemons.py``: the host's syslog-ng and the
Debian 13 chroot's, each with the checkout and its dependencies on PYTHONPATH) whose only log
path is one source into ``file()``, sends ``loggen -s 300`` at it for ``--duration`` seconds, waits
until the file stops growing, stops the daemon and counts the file's lines. The figure is lines
divided by loggen's own sending time; loggen's sent count says what was lost (UDP: the loss
figure; TCP: what the file destination's queue dropped, as the log path has no flow control,
up to 1.9% in session 7: docs/benchmarks.md).

Scenarios, each in every daemon:

* ``tcp``: RFC 3164 (loggen's default, LF-framed) and RFC 5424 (``loggen -P``, octet-counted),
  with 1 and 10 connections: the daemon's ``network(transport(tcp))`` (``syslog()`` for RFC 5424)
  tuned (``log-fetch-limit(1000)``, a 1000-message window per connection) and at its defaults,
  against ``SyslogSource`` with ``"parser" "syslogsrc"`` and with ``"parser" "native"``.
* ``udp``: RFC 3164 datagrams at full rate and at 100k msg/s, the same ``so-rcvbuf`` on both
  sides (4 MiB, net.core.rmem_max here; ``ss -m`` shows what each socket got).
* ``tls``: RFC 3164 over TLS (EC P-256 certificate, TLS 1.3), 1 connection.
* ``hand``: LF-framed TCP (RFC 3164, and RFC 5424 with ``loggen -P -F``), 1 and 10 connections,
  against the source a user would write by hand instead (``HANDWRITTEN``: a 30-line Twisted
  ``LineOnlyReceiver`` posting ``LogMessage.parse(line)``, a batch closed per read): the ratios
  of this scenario are against it, not against the native source. ``handwritten-peer`` is the
  same source storing the sender's address in ``PEERIP`` and ``PEERPORT``, as SyslogSource does
  by default: the same work.

``--pin`` runs the daemon's threads on one CPU and loggen on the other (``taskset``): on a
machine of two cores the scheduler then no longer decides how loggen and the daemon's threads
share them, and the ratios come closer to those of the daemon's CPU per message (session 8:
docs/benchmarks.md).

Every ratio is against the tuned native source of the same daemon, connections and format,
measured in the same round; the rounds are interleaved, and the median of the per-round ratios
is reported with its spread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
from daemons import CHROOT_CHECKOUT, CHROOT_DEPS, available_daemons

UDP_RCVBUF = 4 * 1024 * 1024
#: ``--pin``: the CPUs of the daemon (all its threads) and of loggen
DAEMON_CPU, LOGGEN_CPU = "1", "0"
WINDOW = 100_000  # log-iw-size of the tuned native source (1000 per connection) and ours

# (name, label) of the sources measured; the first is the reference of every ratio
TCP_SOURCES = [
    ("native-tuned", "native tuned"),
    ("native-default", "native defaults"),
    ("syslogsrc", "SyslogSource, parser syslogsrc"),
    ("syslogsrc-native", "SyslogSource, parser native"),
]
UDP_SOURCES = [
    ("native-tuned", "native"),
    ("syslogsrc", "SyslogSource, parser syslogsrc"),
    ("syslogsrc-native", "SyslogSource, parser native"),
    ("syslogsrc-hybrid", "SyslogSource, parser hybrid (the default)"),
]
TLS_SOURCES = [
    ("native-tuned", "native tuned"),
    ("syslogsrc", "SyslogSource, parser syslogsrc"),
    ("syslogsrc-native", "SyslogSource, parser native"),
]
# against the source a user would write by hand (HANDWRITTEN below): LF-framed TCP, both formats
HAND_SOURCES = [
    ("handwritten", "hand-written Twisted source"),
    ("handwritten-peer", "hand-written, with PEERIP and PEERPORT (the same work as native)"),
    ("syslogsrc-native", "SyslogSource, parser native"),
    ("syslogsrc-native-bare", "SyslogSource, parser native, source-ip none (the same work)"),
    ("syslogsrc", "SyslogSource, parser syslogsrc"),
    ("syslogsrc-hybrid", "SyslogSource, parser hybrid"),
    ("native-tuned", "native tuned"),
]


def source_config(
    source: str, transport: str, port: int, rfc5424: bool, certs: dict[str, str] | None
) -> str:
    """The ``source s { ... };`` statement of one measurement."""
    addr = f"ip(127.0.0.1) port({port})"
    if source.startswith("handwritten"):
        flags = " flags(syslog-protocol)" if rfc5424 else ""
        cls = "PeerLineSource" if source == "handwritten-peer" else "LineSource"
        return (
            f'python(class("syslogsrc_bench_handwritten.{cls}") options("port" "{port}")'
            f" log-iw-size({WINDOW}){flags})"
        )
    if source.startswith("native"):
        if transport == "udp":
            return f"network(transport(udp) {addr} so-rcvbuf({UDP_RCVBUF}))"
        driver = "syslog" if rfc5424 else "network"
        opts = ""
        if transport == "tls":
            assert certs is not None
            opts = (
                f' tls(key-file("{certs["key"]}") cert-file("{certs["cert"]}")'
                " peer-verify(optional-untrusted))"
            )
        if source == "native-tuned":
            opts += f" log-fetch-limit(1000) log-iw-size({WINDOW}) max-connections(100)"
        return f"{driver}(transport({transport}) {addr}{opts})"
    parser = {
        "syslogsrc-native": "native",
        "syslogsrc-native-bare": "native",
        "syslogsrc-hybrid": "hybrid",
    }.get(source, "syslogsrc")
    if transport == "udp":
        listen = f"udp:{port}:interface=127.0.0.1"
        extra = f' "so-rcvbuf" "{UDP_RCVBUF}"'
    elif transport == "tls":
        assert certs is not None
        listen = f"ssl:{port}:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
        extra = ""
    else:
        listen = f"tcp:{port}:interface=127.0.0.1"
        extra = ""
    if source == "syslogsrc-native-bare":  # what the hand-written source gives: no address
        extra += ' "source-ip" "none"'
    # the daemon's parser needs flags(syslog-protocol) to read RFC 5424, as syslog() sets it
    flags = " flags(syslog-protocol)" if (rfc5424 and parser != "syslogsrc") else ""
    return (
        f'python(class("syslogsrc.SyslogSource") options("listen" "{listen}" "parser" "{parser}"'
        f' "max-connections" "100"{extra}) log-iw-size({WINDOW}){flags})'
    )


class Visible:
    """A directory ``daemon`` can read, for what a measurement brings: the TLS certificate, the
    cost probe's module, another checkout's ``syslogsrc`` (``--code``). For the chroot daemon it
    is under the chroot's /tmp; ``inner`` is the path as the daemon sees it."""

    def __init__(self, daemon, workdir: Path, code: Path | None) -> None:
        if daemon.root is not None:
            self.host = Path(tempfile.mkdtemp(prefix="slng-bench-", dir=daemon.root / "tmp"))
            self.host.chmod(0o755)
            self.inner = "/" + str(self.host.relative_to(daemon.root))
        else:
            self.host = workdir / "visible"
            self.host.mkdir(parents=True, exist_ok=True)
            self.inner = str(self.host)
        (self.host / "syslogsrc_bench_cost.py").write_text(COST_PROBE)
        (self.host / "syslogsrc_bench_handwritten.py").write_text(HANDWRITTEN)
        self.code_inner: str | None = None
        if code is not None:
            shutil.copytree(
                code / "syslogsrc",
                self.host / "code" / "syslogsrc",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            self.code_inner = f"{self.inner}/code"
        from certs import make_certs

        (self.host / "certs").mkdir()
        certs = make_certs(self.host / "certs")
        self.certs = {
            "key": f"{self.inner}/certs/{certs.server_key.name}",
            "cert": f"{self.inner}/certs/{certs.server_cert.name}",
        }
        self.pythonpath = ":".join(
            [
                self.code_inner or (CHROOT_CHECKOUT if daemon.root else str(C.CHECKOUT)),
                CHROOT_DEPS if daemon.root else str(daemon.deps_dir()),
                self.inner,
            ]
        )

    def remove(self) -> None:
        shutil.rmtree(self.host, ignore_errors=True)


def measure(
    daemon,
    source: str,
    *,
    transport: str,
    connections: int,
    rfc5424: bool,
    rate: int | None,
    duration: float,
    workdir: Path,
    visible: Visible,
    lf_framing: bool = False,
    pin: bool = False,
) -> dict[str, object]:
    kind = "udp" if transport == "udp" else "tcp"
    port = C.free_port(kind)
    config = (
        f"source s {{ {source_config(source, transport, port, rfc5424, visible.certs)}; }};\n"
        'destination f { file("@STATE@/out.log"); };\n'
        "log { source(s); destination(f); };\n"
    )
    running = daemon.spawn(
        config,
        workdir=workdir,
        wait_ports=[(kind, port)] if kind == "udp" else [port],
        env={"PYTHONPATH": visible.pythonpath},
    )
    out = running.state_dir / "out.log"
    try:
        if pin:  # every thread of the daemon (and those it starts later) on one core
            subprocess.run(
                ["taskset", "-a", "-p", "-c", DAEMON_CPU, str(running.pid)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        rcvbuf = C.socket_buffers(running.pid, port) if transport == "udp" else {}
        load_before = C.loadavg()
        cpu_before = C.cpu_seconds(running.pid)
        sent = C.run_loggen(
            port,
            prefix=["taskset", "-c", LOGGEN_CPU] if pin else (),
            transport=transport,
            seconds=duration,
            connections=connections,
            rate=rate,
            rfc5424=rfc5424,
            lf_framing=lf_framing,
        )

        def size() -> int:
            try:
                return out.stat().st_size
            except FileNotFoundError:
                return 0

        C.wait_stable(size, quiet=1.0, timeout=duration * 10 + 60)
        cpu = C.cpu_seconds(running.pid) - cpu_before
        rc = running.stop()
    finally:
        running.close()
    out = running.state_dir / "out.log"  # close() may have moved the state dir
    lines = C.count_lines(out)
    first = b""
    if lines:
        with open(out, "rb") as f:
            first = f.readline()[:160]
    stderr = running.stderr()
    errors = [
        line
        for line in stderr.splitlines()
        if ("rror" in line or "Traceback" in line) and "dropping message" not in line
    ]
    # "Incorrectly suspended source, dropping message": posted while the window was empty
    dropped_by_daemon = stderr.count("dropping message")
    shutil.rmtree(running.state_dir, ignore_errors=True)
    result = {
        "rate": lines / sent.seconds if sent.seconds else 0.0,
        "received": lines,
        "sent": sent.sent,
        "lost": sent.sent - lines,
        "loss_pct": 100.0 * (sent.sent - lines) / sent.sent if sent.sent else 0.0,
        "loggen_seconds": sent.seconds,
        "loggen_rate": sent.rate,
        "daemon_cpu_us_per_msg": 1e6 * cpu / lines if lines else None,
        "daemon_rc": rc,
        "load": round((load_before + C.loadavg()) / 2, 2),
        "first_line": first.decode("utf-8", "replace").rstrip("\n"),
        "errors": errors[:5],
        "daemon_dropping_message_lines": dropped_by_daemon,
    }
    if rcvbuf:
        result["so_rcvbuf_granted"] = rcvbuf.get("rb")
    return result


HANDWRITTEN = '''"""What a user writes by hand instead of syslogsrc: 30 lines of Twisted.

Lines on a TCP port, each parsed by the daemon's parser and posted; the batch closed after each
read where the daemon has batches. No flow control of its own: post_message() blocks when the
window is full (the daemon's blocking mode).
"""
import syslogng
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver


class Lines(LineOnlyReceiver):
    delimiter = b"\\n"
    MAX_LENGTH = 65536

    def lineReceived(self, line):
        source = self.factory.source
        source.post_message(syslogng.LogMessage.parse(line, source.parse_options))

    def dataReceived(self, data):
        super().dataReceived(data)
        if self.factory.batches:
            self.factory.source.close_batch()


class PeerLines(Lines):
    """The same, with the sender's address in two pairs (as SyslogSource by default)."""

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = peer.host, str(peer.port)

    def lineReceived(self, line):
        source = self.factory.source
        msg = syslogng.LogMessage.parse(line, source.parse_options)
        msg["PEERIP"], msg["PEERPORT"] = self.peer
        source.post_message(msg)


class LineSource(syslogng.LogSource):
    protocol = Lines

    def init(self, options):
        self.port = int(options["port"])
        self.auto_close_batches = False
        self.reactor = EPollReactor()
        return True

    def run(self):
        factory = Factory.forProtocol(self.protocol)
        factory.source, factory.batches = self, hasattr(self, "close_batch")
        self.reactor.listenTCP(self.port, factory, interface="127.0.0.1")
        self.reactor.run(installSignalHandlers=False)
        if factory.batches:
            self.close_batch()

    def request_exit(self):
        self.reactor.callFromThread(self.reactor.stop)


class PeerLineSource(LineSource):
    protocol = PeerLines
'''


COST_PROBE = '''"""Run inside syslog-ng by bench/daemon.py.

What SyslogSource costs per message in its own thread, without the network, for loggen's RFC
3164 and RFC 5424 frames: our parse(), the hybrid's pre-check, each parser's builder (the
LogMessage of a frame, annotations included) and each call into the daemon a message may take.
The window is large and the batch closed every 200 posts, as a 64 KiB read gives.
"""

import datetime as dt
import json
import time

from syslogng import Logger, LogMessage
from syslogsrc import _daemon_parse
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.parsing import parse
from syslogsrc.source import SyslogSource

TODAY = dt.date.today().isoformat().encode()
FRAMES = {
    "3164": b"<38>" + TODAY + b"T06:42:28 localhost prg00000[1234]: seq: 0000000000, thread: 0000,"
    b" runid: 1795502548, stamp: 2026-11-24T06:42:28 " + b"PADD" * 40,
    "5424": b"<38>1 " + TODAY + b"T06:48:00+00:00 localhost prg00000 1234 - - \\xef\\xbb\\xbfseq:"
    b" 0000000000, thread: 0000, runid: 1795502880, stamp: 2026-11-24T06:48:00 "
    + b"PADD" * 35,
}
N = 20000


class CostProbe(SyslogSource):
    def run(self):
        self.attach_for_probe()
        origin = Origin("tcp", ListenerStats("probe"), "127.0.0.1", 40000, 5514)
        out = {}

        def timed(name, fn):
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - t0)
            out[name] = sorted(runs)[2] / N * 1e6

        opts = self.parse_options
        stamp = dt.datetime.now(dt.timezone.utc)
        for fmt, frame in FRAMES.items():
            msg = LogMessage.parse(frame, opts)
            timed(f"ours parse() {fmt}", lambda: [parse(frame, "auto") for _ in range(N)])
            test = _daemon_parse.frame_test(_daemon_parse.SHAPES)
            timed(f"pre-check {fmt}", lambda: [test(frame) for _ in range(N)])
            timed(
                f"call LogMessage.parse {fmt}",
                lambda: [LogMessage.parse(frame, opts) for _ in range(N)],
            )
            if fmt == "3164":
                timed("call LogMessage()", lambda: [LogMessage() for _ in range(N)])

                def setitem():
                    for _ in range(N):
                        msg["PEERIP"] = "127.0.0.1"

                timed("call msg[name] = value", setitem)
                timed("call set_pri", lambda: [msg.set_pri(38) for _ in range(N)])
                timed("call set_timestamp", lambda: [msg.set_timestamp(stamp) for _ in range(N)])

                def post():
                    for i in range(N):
                        self.post_message(LogMessage.parse(frame, opts))
                        if i % 200 == 199:
                            self.close_batch()
                    self.close_batch()

                timed("call LogMessage.parse + post_message", post)
            for parser in ("syslogsrc", "native", "hybrid"):
                self._native = parser == "native"
                self._hybrid = parser == "hybrid"
                self._c_shapes = {"auto": self._shapes_read_alike("auto")} if self._hybrid else {}

                def build():
                    b = self.builder(origin)
                    for _ in range(N):
                        b(frame)

                timed(f"build {fmt} {parser}", build)
        Logger().error("SYSLOGSRC-BENCH-COST " + json.dumps(out))

    def attach_for_probe(self):
        probe = LogMessage.parse(b"<13>1 2024-01-02T03:04:05Z h a - - - x", self.parse_options)
        self._msgformat_pair = bool(_value(probe, "MSGFORMAT"))

    def request_exit(self):
        pass


def _value(msg, name):
    try:
        v = msg[name]
    except KeyError:
        return b""
    return v if isinstance(v, bytes) else str(v).encode()
'''


def measure_cost(daemon, workdir: Path, visible: Visible) -> dict[str, float]:
    """The cost probe in ``daemon``: microseconds per message in the source's thread."""
    config = (
        'source s { python(class("syslogsrc_bench_cost.CostProbe")'
        ' options("listen" "tcp:9:interface=127.0.0.1") log-iw-size(100000000)); };\n'
        'destination f { file("@STATE@/out.log"); };\n'
        "log { source(s); destination(f); };\n"
    )
    running = daemon.spawn(config, workdir=workdir, env={"PYTHONPATH": visible.pythonpath})
    try:
        line = running.wait_for_stderr("SYSLOGSRC-BENCH-COST", timeout=600)
    finally:
        running.close()
        shutil.rmtree(running.state_dir, ignore_errors=True)
    return json.loads(line.split("SYSLOGSRC-BENCH-COST ", 1)[1].rstrip(";"))


def cases(args) -> list[dict[str, object]]:
    """Every group of measurements compared with each other: one per daemon, scenario, format,
    connections and rate."""
    out = []
    for scenario in args.scenarios:
        if scenario == "tcp":
            for conns in args.connections:
                for rfc5424 in (False, True):
                    out.append(
                        {
                            "scenario": "tcp",
                            "transport": "tcp",
                            "connections": conns,
                            "rfc5424": rfc5424,
                            "rate": None,
                            "sources": TCP_SOURCES,
                        }
                    )
        elif scenario == "udp":
            for rate in (None, 100_000):
                out.append(
                    {
                        "scenario": "udp",
                        "transport": "udp",
                        "connections": 1,
                        "rfc5424": False,
                        "rate": rate,
                        "sources": UDP_SOURCES,
                    }
                )
        elif scenario == "hand":
            for conns in args.connections:
                for rfc5424 in (False, True):
                    out.append(
                        {
                            "scenario": "hand",
                            "transport": "tcp",
                            "connections": conns,
                            "rfc5424": rfc5424,
                            "lf_framing": True,
                            "rate": None,
                            "sources": HAND_SOURCES,
                            "reference": "handwritten",
                        }
                    )
        elif scenario == "tls":
            out.append(
                {
                    "scenario": "tls",
                    "transport": "tls",
                    "connections": 1,
                    "rfc5424": False,
                    "rate": None,
                    "sources": TLS_SOURCES,
                }
            )
    if args.sources:
        for case in out:
            case["sources"] = [s for s in case["sources"] if s[0] in args.sources]
    return out


def case_name(case: dict[str, object]) -> str:
    fmt = "rfc5424" if case["rfc5424"] else "rfc3164"
    if case.get("lf_framing"):
        fmt += " LF"
    rate = "full rate" if case["rate"] is None else f"{case['rate'] // 1000}k msg/s"
    conns = case["connections"]
    vs = f" vs {case['reference']}" if case.get("reference") else ""
    return f"{case['transport']} {fmt} {conns} conn{'s' if conns > 1 else ''} {rate}{vs}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds of loggen per run")
    ap.add_argument("--runs", type=int, default=3, help="rounds (at least 3 for the docs)")
    ap.add_argument("--daemons", default="", help="comma-separated names (default: all found)")
    ap.add_argument(
        "--scenarios",
        default="cost,hand,tcp,udp,tls",
        help="any of cost, hand (against a hand-written source), tcp, udp, tls",
    )
    ap.add_argument("--connections", default="1,10")
    ap.add_argument(
        "--sources", default="", help="only these sources (e.g. native-tuned,syslogsrc)"
    )
    ap.add_argument("--name", default="daemon", help="results file: build/bench/NAME.json")
    ap.add_argument(
        "--pin",
        action="store_true",
        help=f"the daemon's threads on CPU {DAEMON_CPU}, loggen on CPU {LOGGEN_CPU} (taskset):"
        " the scheduler no longer shares two cores between them, and the ratios come closer to"
        " those of the daemon's CPU per message",
    )
    ap.add_argument(
        "--code",
        type=Path,
        default=None,
        help="run the syslogsrc package of this other checkout inside the daemons (before/after"
        " comparisons: git worktree add /tmp/old <commit>)",
    )
    args = ap.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.connections = [int(c) for c in args.connections.split(",") if c]
    args.sources = [s for s in args.sources.split(",") if s]

    daemons = available_daemons()
    if args.daemons:
        wanted = args.daemons.split(",")
        daemons = [d for d in daemons if d.name in wanted]
    if not daemons:
        print("no syslog-ng daemon found: python tests/daemons.py says why", file=sys.stderr)
        return 1
    machine = C.machine()
    C.header(
        "syslogsrc inside syslog-ng vs the daemon's own sources",
        machine,
        f"daemons: {', '.join(f'{d.name} ({d.full_version})' for d in daemons)}; "
        f"{args.runs} rounds x {args.duration:g} s; loggen -s 300",
    )
    for d in daemons:
        d.deps_dir()  # build the dependency dirs now, not inside a timed run

    workdir = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    started = time.monotonic()
    all_cases = cases(args)
    results: dict[str, dict[str, object]] = {}
    costs: dict[str, list[dict[str, float]]] = {}
    visible: dict[str, Visible] = {}
    try:
        for d in daemons:
            visible[d.name] = Visible(d, workdir / d.name, args.code)
        for round_no in range(args.runs):
            for d in daemons:
                if "cost" in args.scenarios:
                    cost = measure_cost(d, workdir / d.name, visible[d.name])
                    costs.setdefault(d.name, []).append(cost)
                    print(
                        f"[{round_no + 1}/{args.runs}] {d.name} | cost in the source's thread, "
                        "us/msg: " + " ".join(f"{k}={v:.2f}" for k, v in cost.items()),
                        flush=True,
                    )
                for case in all_cases:
                    key = f"{d.name} | {case_name(case)}"
                    entry = results.setdefault(
                        key,
                        {
                            "daemon": d.name,
                            "version": d.full_version,
                            **{k: v for k, v in case.items() if k != "sources"},
                            "runs": {s: [] for s, _ in case["sources"]},
                        },
                    )
                    # alternate the order each round, so no source always runs first
                    order = list(case["sources"])
                    if round_no % 2:
                        order.reverse()
                    for source, _label in order:
                        r = measure(
                            d,
                            source,
                            transport=case["transport"],
                            connections=case["connections"],
                            rfc5424=case["rfc5424"],
                            rate=case["rate"],
                            duration=args.duration,
                            workdir=workdir / d.name,
                            visible=visible[d.name],
                            lf_framing=bool(case.get("lf_framing")),
                            pin=args.pin,
                        )
                        entry["runs"][source].append(r)
                        loss = f" lost {r['loss_pct']:.1f}%" if r["lost"] else ""
                        offered = C.krate(r["loggen_rate"])
                        print(
                            f"[{round_no + 1}/{args.runs}] {key} {source:17} "
                            f"{C.krate(r['rate']):>6} msg/s{loss}  (loggen {offered}"
                            f", load {r['load']:.1f})"
                            + (f" ERRORS {r['errors'][:1]}" if r["errors"] else ""),
                            flush=True,
                        )
    finally:
        for v in visible.values():
            v.remove()
        shutil.rmtree(workdir, ignore_errors=True)

    summarise(results)
    elapsed = time.monotonic() - started
    data = {
        "machine": machine,
        "params": {
            "duration_s": args.duration,
            "runs": args.runs,
            "pinned": args.pin,
            "message_size": 300,
            "window": WINDOW,
            "udp_so_rcvbuf": UDP_RCVBUF,
            "elapsed_s": round(elapsed),
            "code": str(args.code or C.CHECKOUT),
        },
        "cases": results,
        "cost_us_per_msg": {
            name: {key: C.summary([r[key] for r in runs]) for key in runs[0]}
            for name, runs in costs.items()
        },
    }
    print_table(data)
    path = C.save_results(args.name, data)
    print(f"\nresults: {path}; took {elapsed / 60:.1f} min")
    return 0


def summarise(results: dict[str, dict[str, object]]) -> None:
    for entry in results.values():
        runs = entry["runs"]
        ref = [r["rate"] for r in runs.get(entry.get("reference") or "native-tuned", [])]
        entry["summary"] = {}
        for source, rs in runs.items():
            rates = [r["rate"] for r in rs]
            s = {
                "rate": C.summary(rates),
                "loss_pct": C.summary([r["loss_pct"] for r in rs]),
                "cpu_us_per_msg": C.summary(
                    [r["daemon_cpu_us_per_msg"] for r in rs if r["daemon_cpu_us_per_msg"]]
                ),
            }
            if ref and len(ref) == len(rates):
                s["ratio"] = C.paired_ratios(rates, ref)
            entry["summary"][source] = s


def print_table(data: dict[str, object]) -> None:
    rows = []
    for key, entry in data["cases"].items():
        for source, s in entry["summary"].items():
            ratio = s.get("ratio")
            loss = s["loss_pct"]["median"]
            rows.append(
                [
                    *key.split(" | ", 1),
                    source,
                    C.krate(s["rate"]["median"]),
                    f"{C.krate(s['rate']['min'])}-{C.krate(s['rate']['max'])}",
                    (
                        C.spread(ratio)
                        + (f" x {entry['reference']}" if entry.get("reference") else "")
                    )
                    if ratio
                    else "",
                    f"{loss:.1f}%" if loss else "0",
                    f"{s['cpu_us_per_msg']['median']:.1f}" if s["cpu_us_per_msg"]["median"] else "",
                ]
            )
    print()
    print(
        C.markdown_table(
            [
                "daemon",
                "case",
                "source",
                "msg/s",
                "range",
                "ratio (range): x native tuned, or x the source named",
                "loss",
                "daemon CPU us/msg",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
