"""What a test of a source, a protocol or a sink needs: public, documented, stable.

For people who write their own sources or embed the factories, and for syslogsrc's own tests:

* :class:`RecordingSink` — an :class:`~syslogsrc.interfaces.IMessageSink` that records what
  protocols hand it, one batch per call, and can play the daemon's flow control (a window
  that pauses every producer from inside ``post``, as syslog-ng's ``suspend()`` arrives);
* :class:`AcknowledgingSink` — a :class:`RecordingSink` that also says when each message is
  stored (:class:`~syslogsrc.interfaces.IAcknowledgingSink`), at once or when the test says so,
  in any order: what a protocol that answers its sender (RELP) is tested with;
* :func:`connect` — a stream factory's protocol on a fake transport
  (:class:`twisted.internet.testing.StringTransport`), peer and local address chosen;
* :func:`free_port`, :func:`accepts`, :func:`wait_until`, :func:`has_ipv6` — for tests on real
  loopback sockets;
* :class:`~syslogsrc.host.SourceHost` (re-exported) — runs any ``LogSource`` class the way
  syslog-ng does (``init()``, ``run()`` in its own thread, ``request_exit()``, ``deinit()``),
  on the emulation of the ``syslogng`` module;
* :class:`ListeningSource` — a source class run by ``SourceHost`` on loopback listeners,
  with a :class:`CountingOutput` (which can stall, as a slow destination does) and the
  records of the daemon's log (:class:`LogRecords`): for tests under load or hostile input;
* :class:`GoodSender`, :class:`GoodHTTPSender` — well-behaved senders that run alongside a
  test's traffic and check that every one of their messages arrived, in order, once;
* :func:`http_post`, :func:`parse_responses`, :func:`closed_by_peer`, :func:`tls_connect`,
  :func:`peak_rss`, :data:`HOSTILE_BYTES` — the client side of such tests.

A test of a source with a listener, in full::

    from syslogsrc.testing import SourceHost, free_port, wait_until
    import socket

    port = free_port()
    with SourceHost(MySource, {"listen": f"tcp:{port}:interface=127.0.0.1"}) as host:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>1 - h app - - - hello\\n")
        assert wait_until(lambda: len(host.messages) == 1)
    assert host.messages[0]["MESSAGE"] == b"hello"
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from syslogsrc.host import SourceHost
from syslogsrc.interfaces import IAcknowledgingSink, IMessageSink, Origin
from syslogsrc.parsing import ParsedMessage, parse

__all__ = [
    "HOSTILE_BYTES",
    "WAIT",
    "AcknowledgingSink",
    "CountingOutput",
    "GoodHTTPSender",
    "GoodSender",
    "HTTPResponse",
    "ListeningSource",
    "LogRecords",
    "PeakRSS",
    "RecordingSink",
    "RelpClient",
    "SourceHost",
    "accepts",
    "closed_by_peer",
    "connect",
    "free_port",
    "has_ipv6",
    "http_post",
    "parse_responses",
    "peak_rss",
    "tls_connect",
    "wait_until",
]

#: Seconds the helpers below wait for a network event at most (a limit for a loaded machine,
#: not an expectation).
WAIT = 15.0

_Message = bytes | ParsedMessage


@implementer(IMessageSink)
class RecordingSink:
    """Records what protocols post: every message with its origin, and each call's batch.

    :param window: pause every producer once this many messages were taken since the last
        :meth:`resume` (from inside ``post``: what was not taken stays with the protocol);
        None: never.
    :param raise_on: raw frames whose post raises ``ValueError`` (a sink that fails).

    A post while paused takes nothing and is recorded in :attr:`posted_while_paused` (the
    daemon would drop those messages): a protocol that keeps flow control leaves it empty. A
    post of no messages raises ``ValueError``: a protocol with nothing to post has no batch.
    """

    def __init__(self, window: int | None = None, raise_on: Sequence[bytes] = ()) -> None:
        self.window = window
        self.raise_on = set(raise_on)
        self.paused = False
        #: every message taken, with its origin, in order
        self.posts: list[tuple[_Message, Origin]] = []
        #: the messages each ``post`` call took (one read, one datagram, one request)
        self.batches: list[list[_Message]] = []
        #: messages offered while paused (none were taken)
        self.posted_while_paused: list[_Message] = []
        #: the registered producers (connections, ports, HTTP sites)
        self.producers: list[Any] = []
        #: called after each message is taken, with it (e.g. to pause or stop mid-batch)
        self.on_post: Callable[[_Message], object] | None = None
        self._since_resume = 0

    @property
    def messages(self) -> list[_Message]:
        """Every message taken, in order (raw frames as ``bytes``)."""
        return [message for message, _ in self.posts]

    def parsed(self, format: str = "auto") -> list[ParsedMessage]:
        """Every message taken, parsed as the standalone sinks parse them."""
        return [
            parse(m, origin.format or format) if type(m) is bytes else m  # type: ignore[misc]
            for m, origin in self.posts
        ]

    def post(self, messages: Sequence[_Message], origin: Origin) -> int:
        if not messages:
            raise ValueError("post() of an empty batch")
        if self.paused:
            self.posted_while_paused.extend(messages)
            return 0
        if self.raise_on.intersection(m for m in messages if type(m) is bytes):
            raise ValueError(f"the sink refuses one of {list(messages)!r}")
        batch: list[_Message] = []
        for message in messages:
            if self.paused:
                break
            self.posts.append((message, origin))
            batch.append(message)
            origin.stats.posted += 1
            self._since_resume += 1
            if self.on_post is not None:
                self.on_post(message)
            if self.window is not None and self._since_resume >= self.window:
                self.pause()
        if batch:
            self.batches.append(batch)
        return len(batch)

    def register_producer(self, producer: Any) -> None:
        self.producers.append(producer)
        if self.paused:
            producer.pauseProducing()

    def unregister_producer(self, producer: Any) -> None:
        self.producers.remove(producer)

    def pause(self) -> None:
        """Pause every producer (the daemon's ``suspend()``)."""
        self.paused = True
        for producer in list(self.producers):
            producer.pauseProducing()

    def resume(self) -> None:
        """Resume every producer (the daemon's ``wakeup()``); the window starts again."""
        self.paused = False
        self._since_resume = 0
        for producer in list(self.producers):
            producer.resumeProducing()

    def stop(self) -> None:
        """Stop every producer for good (the source is going away) and forget them."""
        for producer in list(self.producers):
            producer.stopProducing()
        self.producers.clear()


@implementer(IAcknowledgingSink)
class AcknowledgingSink(RecordingSink):
    """A :class:`RecordingSink` that acknowledges what it takes with ``post_tracked``.

    :param acknowledge: ``"at-once"``: each message taken is acknowledged from inside
        ``post_tracked`` (a sink whose storage is immediate); ``"manual"``: the test calls
        :meth:`acknowledge` (a destination that acknowledges later, in any order).
    :param refuse: raw frames acknowledged with ``stored=False`` (a message the sink cannot
        store), at once in either mode.

    Other arguments as :class:`RecordingSink`'s. Messages posted with plain ``post`` are
    recorded and never acknowledged.
    """

    acknowledgement = "recorded"

    def __init__(
        self,
        acknowledge: Literal["at-once", "manual"] = "at-once",
        refuse: Sequence[bytes] = (),
        window: int | None = None,
        raise_on: Sequence[bytes] = (),
    ) -> None:
        if acknowledge not in ("at-once", "manual"):
            raise ValueError(f"acknowledge must be 'at-once' or 'manual', not {acknowledge!r}")
        super().__init__(window=window, raise_on=raise_on)
        self.mode = acknowledge
        self.refuse = set(refuse)
        #: tokens taken and not acknowledged yet (manual mode), in order, with their origins
        self.unacknowledged: list[tuple[Any, Origin]] = []
        #: every acknowledgement made: (token, stored), in order
        self.acknowledged: list[tuple[Any, bool]] = []

    def post_tracked(
        self, messages: Sequence[_Message], origin: Origin, tokens: Sequence[Any]
    ) -> int:
        if len(tokens) != len(messages):
            raise ValueError(f"{len(messages)} messages and {len(tokens)} tokens")
        if origin.acknowledge is None:
            raise ValueError("post_tracked() with an origin that has no acknowledge")
        taken = self.post(messages, origin)
        stored, refused = [], []
        for message, token in zip(messages[:taken], tokens[:taken], strict=True):
            if message in self.refuse:
                refused.append(token)
            elif self.mode == "at-once":
                stored.append(token)
            else:
                self.unacknowledged.append((token, origin))
        if refused:
            self._call(origin, refused, False)
        if stored:
            self._call(origin, stored, True)
        return taken

    def acknowledge(self, tokens: Sequence[Any] | None = None, stored: bool = True) -> list[Any]:
        """Acknowledge ``tokens`` (default: every one waiting), in the order given, one call
        per origin; returns the tokens acknowledged. A token not waiting raises ``KeyError``."""
        waiting = self.unacknowledged
        if tokens is None:
            chosen, self.unacknowledged = waiting, []
        else:
            index = {token: i for i, (token, _) in enumerate(waiting)}
            missing = [t for t in tokens if t not in index]
            if missing:
                raise KeyError(f"not waiting for an acknowledgement: {missing}")
            chosen = [waiting[index[t]] for t in tokens]
            drop = {index[t] for t in tokens}
            self.unacknowledged = [w for i, w in enumerate(waiting) if i not in drop]
        groups: dict[int, tuple[Origin, list[Any]]] = {}
        for token, origin in chosen:
            groups.setdefault(id(origin), (origin, []))[1].append(token)
        for origin, group in groups.values():
            self._call(origin, group, stored)
        return [token for token, _ in chosen]

    def _call(self, origin: Origin, tokens: list[Any], stored: bool) -> None:
        self.acknowledged.extend((token, stored) for token in tokens)
        assert origin.acknowledge is not None
        origin.acknowledge(tokens, stored)


def connect(
    factory: IProtocolFactory,
    peer: tuple[str, int] = ("192.0.2.7", 40000),
    local: tuple[str, int] = ("127.0.0.1", 5514),
) -> tuple[IProtocol, StringTransport]:
    """A protocol of ``factory``, connected to a fake transport: feed it with
    ``protocol.dataReceived(b"...")``; what it writes back is ``transport.value()``."""

    def address(host: str, port: int) -> IPv4Address | IPv6Address:
        return IPv6Address("TCP", host, port) if ":" in host else IPv4Address("TCP", host, port)

    protocol = factory.buildProtocol(address(*peer))
    if protocol is None:
        raise ValueError(f"{factory!r} refused the connection from {peer}")
    transport = StringTransport(hostAddress=address(*local), peerAddress=address(*peer))
    protocol.makeConnection(transport)
    return protocol, transport


def free_port(kind: str = "tcp", host: str = "127.0.0.1") -> int:
    """A port free for ``kind`` ("tcp" or "udp") on ``host`` now (another process may take it
    before the test does: bind at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(family, sock_type) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def has_ipv6() -> bool:
    """True when a socket can be bound on the IPv6 loopback ``::1`` (containers and CI runners
    often have IPv6 turned off): mark IPv6 tests with
    ``pytest.mark.skipif(not has_ipv6(), reason="no IPv6 on ::1")``."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host``:``port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns its last
    value as a bool. Bound every wait in a test by what a loaded machine needs, not a quiet
    one: the timeout is a limit, not an expectation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# -- a running source, its output and its log ----------------------------------------------------


_GOOD = re.compile(rb"good-([\w.-]+)-(\d+)\Z")


class CountingOutput:
    """A :class:`~syslogsrc.host.SourceHost` output that keeps the numbers of the well-behaved
    senders' messages (a ``MESSAGE`` ending ``good-NAME-i``: :attr:`good`) and only counts (and
    samples) the rest, so that a flood does not fill the test's own memory. Thread-safe.

    :param delay: seconds to sleep per message (a slow destination);
    :param keep: keep every message in :attr:`kept` as well.

    :meth:`hold` stalls it (``write`` blocks: the window fills, the source is suspended) until
    :meth:`release`.
    """

    def __init__(self, delay: float = 0, *, keep: bool = False) -> None:
        self.keep = keep
        self.kept: list[Any] = []  #: every message, when ``keep``
        self.lock = threading.Lock()
        #: the numbers ``i`` of each good sender's messages, by NAME, in the order written
        self.good: dict[str, list[int]] = {}
        self.others = 0  #: messages not from a good sender
        self.other_bytes = 0  #: the bytes of their MESSAGE
        self.samples: list[bytes] = []  #: the first 200 other MESSAGEs (up to 200 bytes each)
        self.lengths: list[int] = []  #: lengths of the first 1000 other MESSAGEs
        self.delay = delay
        self._unstalled = threading.Event()  # cleared: write() blocks
        self._unstalled.set()

    def write(self, message: Any) -> None:
        self._unstalled.wait()
        if self.delay:
            time.sleep(self.delay)
        text: Any = b""
        with contextlib.suppress(KeyError):  # 4.x raises KeyError for an unset name
            text = message["MESSAGE"]
        if not isinstance(text, bytes):
            text = str(text).encode()
        with self.lock:
            if self.keep:
                self.kept.append(message)
            good = _GOOD.search(text)
            if good is not None:
                self.good.setdefault(good.group(1).decode(), []).append(int(good.group(2)))
                return
            self.others += 1
            self.other_bytes += len(text)
            if len(self.samples) < 200:
                self.samples.append(text[:200])
            if len(self.lengths) < 1000:
                self.lengths.append(len(text))

    def hold(self) -> None:
        """Stall: ``write`` blocks until :meth:`release`."""
        self._unstalled.clear()

    def release(self) -> None:
        """``write`` goes on (after :meth:`hold`)."""
        self._unstalled.set()

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Never leaves a ``write`` blocked."""
        self.release()


class _Collector(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LogRecords:
    """Collects the records of a ``logging`` logger (``syslogng``: the daemon's internal log,
    as the emulation writes it) in ``records``, in order, once its ``handler`` is added:
    ``logger.addHandler(records.handler)``."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.handler: logging.Handler = _Collector(self.records)

    def matching(self, pattern: str) -> list[str]:
        """The messages that ``pattern`` (a regular expression) finds something in."""
        rx = re.compile(pattern)
        return [r.getMessage() for r in list(self.records) if rx.search(r.getMessage())]

    def errors(self) -> list[str]:
        """The messages logged at ERROR or above."""
        return [r.getMessage() for r in list(self.records) if r.levelno >= logging.ERROR]


class ListeningSource:
    """A source class (default :class:`~syslogsrc.source.SyslogSource`) run by
    :class:`~syslogsrc.host.SourceHost` with listeners ``listen`` (specs, usually on port 0 of
    127.0.0.1) and ``options`` (option names with ``_`` or ``-``), a :class:`CountingOutput`
    (``output``), and the records of the ``syslogng`` log (``logs``). A context manager: on
    entry the listeners are up, on exit the source is stopped and the logger restored::

        with ListeningSource("tcp:0:interface=127.0.0.1", log_iw_size=100) as src:
            good = GoodSender(src, "a")
            good.start()
            ...  # the test's traffic
            good.check()
            assert src.stats().malformed == 0
    """

    def __init__(
        self,
        *listen: str,
        log_iw_size: int = 1000,
        output: CountingOutput | None = None,
        source_class: type | None = None,
        **options: Any,
    ) -> None:
        if source_class is None:
            from syslogsrc.source import SyslogSource as source_class
        self.output = output or CountingOutput()
        self.options = {"listen": " ".join(listen), **{k: str(v) for k, v in options.items()}}
        self.host = SourceHost(
            source_class, self.options, log_iw_size=log_iw_size, output=self.output
        )
        self.logs = LogRecords()
        self._logger = logging.getLogger("syslogng")
        self._level = self._logger.level

    def __enter__(self) -> ListeningSource:
        self._logger.addHandler(self.logs.handler)
        self._logger.setLevel(logging.DEBUG)
        self.host.start()
        ok = self.host.wait_for(
            lambda: (
                bool(self.listeners)
                and all(listener.address is not None for listener in self.listeners)
            ),
            timeout=WAIT,
        )
        assert ok, "the listeners did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.host.close()
        finally:
            self._logger.removeHandler(self.logs.handler)
            self._logger.setLevel(self._level)

    def stop(self) -> None:
        """Stop the source (listeners flush their rate-limited logs); stats stay readable."""
        self.host.stop()

    @property
    def listeners(self) -> list[Any]:
        """The running source's listeners, in the order of ``listen``."""
        source = self.host.source
        return list(getattr(source, "_listeners", ())) if source is not None else []

    def listener(self, index: int = 0) -> Any:
        return self.listeners[index]

    def port(self, index: int = 0) -> int:
        """The port listener ``index`` listens on (the one the kernel chose for port 0)."""
        return self.listener(index).address.port

    def stats(self, index: int = 0) -> Any:
        """The :class:`~syslogsrc.interfaces.ListenerStats` of listener ``index``."""
        return self.listener(index).stats

    def decoders(self, index: int = 0) -> list[Any]:
        """The frame decoders of the listener's open connections (not behind TLS)."""
        out = []
        for conn in list(self.listener(index).tracker.protocols):
            inner = conn.wrappedProtocol
            while not hasattr(inner, "decoder") and hasattr(inner, "wrappedProtocol"):
                inner = inner.wrappedProtocol
            if hasattr(inner, "decoder"):
                out.append(inner.decoder)
        return out

    def wait(self, predicate: Callable[[], object], timeout: float = WAIT) -> bool:
        """``predicate`` became true within ``timeout`` seconds."""
        return self.host.wait_for(predicate, timeout=timeout)


# -- well-behaved senders --------------------------------------------------------------------


class GoodSender(threading.Thread):
    """A well-behaved sender on its own TCP connection to ``source``'s listener (``port``, by
    default its first): ``count`` LF-framed RFC 3164 messages ``good-NAME-i``, one every
    ``interval`` seconds; ``connect`` makes the socket instead (TLS: :func:`tls_connect`).
    :meth:`check` asserts they all arrived, in order, once."""

    def __init__(
        self,
        source: ListeningSource,
        name: str,
        *,
        port: int | None = None,
        count: int = 100,
        interval: float = 0.003,
        connect: Callable[[], socket.socket] | None = None,
    ) -> None:
        super().__init__(name=f"good-{name}", daemon=True)
        self.source = source
        self.tag = name
        self.port = port if port is not None else source.port()
        self.count = count
        self.interval = interval
        self.error: BaseException | None = None  #: what ended the sending early
        self.connected = threading.Event()  #: set once connected (or failed)
        self._connect = connect

    def message(self, i: int) -> bytes:
        return b"<13>Nov 24 06:00:00 good app: good-%s-%d" % (self.tag.encode(), i)

    def run(self) -> None:
        try:
            if self._connect is not None:
                s = self._connect()
            else:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
            with s:
                self.connected.set()
                for i in range(self.count):
                    s.sendall(self.message(i) + b"\n")
                    if self.interval:
                        time.sleep(self.interval)
        except BaseException as e:
            self.error = e
            self.connected.set()

    def check(self, timeout: float = WAIT) -> None:
        """Wait for the sending to end and every message to arrive (at most ``timeout`` s
        each); assert they arrived in order, each once."""
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still sending"
        assert self.error is None, f"{self.name}: {self.error!r}"
        out = self.source.output
        arrived = self.source.wait(lambda: len(out.good.get(self.tag, [])) >= self.count, timeout)
        got = out.good.get(self.tag, [])
        assert arrived, f"{self.name}: {len(got)} of {self.count} arrived"
        assert got == list(range(self.count)), f"{self.name}: lost, duplicated or reordered"


class GoodHTTPSender(GoodSender):
    """Posts ``count`` messages ``good-NAME-i``, one request each, on one keep-alive
    connection to ``source``'s HTTP listener, retrying on 503 (flow control, as the contract
    says; every answer's status is in ``statuses``), with ``Authorization: Bearer <token>``
    when ``token`` is given. ``check()`` wants them all, in order, once."""

    def __init__(
        self,
        source: ListeningSource,
        name: str,
        *,
        count: int = 100,
        interval: float = 0.005,
        token: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(source, name, port=port, count=count, interval=interval)
        self.name = f"good-http-{name}"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.statuses: list[int] = []

    def run(self) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
            self.connected.set()
            for i in range(self.count):
                while True:
                    status, _ = http_post(0, self.message(i), self.headers, conn=conn)
                    self.statuses.append(status)
                    if status != 503:
                        break
                    time.sleep(0.05)
                assert status == 200, status
                time.sleep(self.interval)
            conn.close()
        except BaseException as e:
            self.error = e
            self.connected.set()


# -- the client side ---------------------------------------------------------------------------


def http_post(
    port: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    path: str = "/",
    conn: Any = None,
) -> tuple[int, dict[str, Any]]:
    """One POST to 127.0.0.1:``port`` (or on ``conn``, an ``http.client.HTTPConnection`` kept
    open: ``port`` is then not used); returns the status and the JSON answer ({} without a
    body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}
    finally:
        if own:
            conn.close()


@attrs.frozen
class HTTPResponse:
    """One HTTP/1.1 response as :func:`parse_responses` read it (header names in lower case)."""

    code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, which must be JSON (the ingest site answers in JSON)."""
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def parse_responses(data: bytes) -> list[HTTPResponse]:
    """Every complete response in ``data`` (what a site wrote to a transport, or read from a
    socket), in order; interim ``100 Continue`` responses are skipped, an incomplete last one
    is left out. Bodies are read by ``Content-Length``."""
    responses = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return responses
        status, *lines = head.decode("latin-1").split("\r\n")
        code = int(status.split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (li.split(":", 1) for li in lines)}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return responses
        data = rest[length:]
        if code != 100:
            responses.append(HTTPResponse(code, headers, rest[:length]))


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Wait until the server closes ``s`` (EOF or reset), reading and discarding what it
    sends; True if it did within ``timeout`` seconds."""
    s.settimeout(timeout)
    try:
        while True:
            if s.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def tls_connect(
    port: int,
    ca: str,
    cert: str | None = None,
    key: str | None = None,
    *,
    host: str = "127.0.0.1",
    server_hostname: str = "localhost",
) -> ssl.SSLSocket:
    """A TLS connection to ``host``:``port`` that trusts the CA file ``ca`` and presents the
    client certificate ``cert`` (with ``key``) when given; the handshake is done."""
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    raw = socket.create_connection((host, port), timeout=WAIT)
    return context.wrap_socket(raw, server_hostname=server_hostname)


#: Frames with invalid UTF-8 and NUL bytes in every field, which a receiver must deliver byte
#: for byte (as syslog-ng does): a message is bytes, not text.
HOSTILE_BYTES = [
    b"<13>Nov 24 06:00:00 h\xff\xfe app[1]: bad host",
    b"<13>Nov 24 06:00:00 h pr\xc3\x28g[1]: bad program",
    b"<13>Nov 24 06:00:00 h app[\xe2\x82]: bad pid",
    b"<13>Nov 24 06:00:00 h app: bad message \xed\xa0\x80 (a surrogate) \xf8\x88\x80\x80\x80",
    b'<13>1 2024-05-01T10:00:00Z h\xff app - - [id p="\xc0\xaf"] \xef\xbb\xbf\xff sd',
    b"<\xff3>Nov 24 06:00:00 h app: bad pri",
    b"\xff\xfe\xfd raw garbage",
    b"<13>Nov 24 06:00:00 h app: NUL \x00 inside \x00\x00 twice",
    b"<13>1 2024-05-01T10:00:00Z h app - - - NUL\x00in 5424",
    b"\x00<13>Nov 24 06:00:00 h app: NUL first",
]


# -- memory -----------------------------------------------------------------------------------


def _memory_status(pid: int | str) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values


class PeakRSS:
    """What :func:`peak_rss` measured: resident set size at the start, peak over the block."""

    before = 0
    peak = 0

    @property
    def growth(self) -> int:
        """Bytes the peak RSS grew by over the block."""
        return self.peak - self.before


@contextlib.contextmanager
def peak_rss(pid: int | str = "self") -> Iterator[PeakRSS]:
    """Peak RSS growth of a process over the block (Linux >= 4.0: ``VmHWM`` reset by writing 5
    to ``/proc/PID/clear_refs``; our own process, or any as root). Bound memory with it: assert
    ``growth`` below a limit, never a timing. With ``HOSTILE_VERBOSE`` set in the environment
    the growth is printed, with the test's name (the figures of docs/reliability.md)."""
    measured = PeakRSS()
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    measured.before = _memory_status(pid)["VmRSS"]
    yield measured
    measured.peak = _memory_status(pid)["VmHWM"]
    if os.environ.get("HOSTILE_VERBOSE"):
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        print(f"\n[peak RSS] {test}: +{measured.growth / 2**20:.1f} MiB")


class RelpClient:
    """A blocking RELP client for tests, speaking as rsyslog's ``omrelp`` does (librelp's
    frames, offers and TXNRs) without its retries: open a session, send messages, read the
    answers.

    ::

        with RelpClient(port) as relp:
            txnrs = [relp.send(b"<13>1 - h app - - - hello")]
            assert relp.wait(txnrs) == {txnrs[0]: (200, "OK")}

    :param port: the RELP listener's port on ``host``.
    :param sock: a connected socket to use instead (a TLS one, from :func:`tls_connect`).
    """

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", *, timeout: float = WAIT, sock: Any = None
    ) -> None:
        self.sock = sock if sock is not None else socket.create_connection((host, port), timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        #: the answer of each TXNR: (code, text)
        self.answers: dict[int, tuple[int, str]] = {}
        #: the server sent ``serverclose`` (it is closing the session)
        self.server_closed = False
        self._next = 1
        self._buffer = b""

    def __enter__(self) -> RelpClient:
        self.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if not self.server_closed and exc_info[0] is None:
                self.close()
        finally:
            self.sock.close()

    def _command(self, command: bytes, data: bytes) -> int:
        txnr = self._next
        self._next = 1 if txnr == 999_999_999 else txnr + 1
        frame = b"%d %s %d" % (txnr, command, len(data))
        self.sock.sendall(frame + (b" " + data if data else b"") + b"\n")
        return txnr

    def open(self) -> str:
        """The ``open`` command with omrelp's offers; returns the server's answer text (its
        own offers). Raises ``AssertionError`` if it is not ``200``."""
        offers = b"relp_version=0\nrelp_software=syslogsrc.testing\ncommands=syslog"
        txnr = self._command(b"open", offers)
        code, text = self.wait([txnr])[txnr]
        assert code == 200, f"open answered {code} {text}"
        return text

    def send(self, message: bytes) -> int:
        """One ``syslog`` frame; returns its TXNR (its answer comes later: :meth:`wait`)."""
        return self._command(b"syslog", message)

    def close(self) -> tuple[int, str] | None:
        """The ``close`` command; waits for its answer (which the server sends once every
        earlier frame is answered) and returns it, None if the server closed first."""
        txnr = self._command(b"close", b"")
        try:
            return self.wait([txnr]).get(txnr)
        except ConnectionError:
            return None

    def wait(self, txnrs: Sequence[int]) -> dict[int, tuple[int, str]]:
        """Read answers until every one of ``txnrs`` has come; returns theirs. Raises
        ``TimeoutError`` after ``timeout`` seconds without all, ``ConnectionError`` if the
        server closes first."""
        deadline = time.monotonic() + self.timeout
        while any(t not in self.answers for t in txnrs):
            if not self._read(deadline):
                missing = [t for t in txnrs if t not in self.answers]
                raise ConnectionError(f"the server closed; no answer for {missing[:10]}")
        return {t: self.answers[t] for t in txnrs}

    def _read(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no RELP answer in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no RELP answer in time") from None
        except OSError:
            return False
        if not data:
            return False
        self._buffer += data
        while True:
            frame = self._frame()
            if frame is None:
                return True
            txnr, command, body = frame
            if command == b"serverclose":
                self.server_closed = True
            elif command == b"rsp":
                code, _, text = body.partition(b" ")
                self.answers[txnr] = (int(code or b"0"), text.decode("utf-8", "replace"))

    def _frame(self) -> tuple[int, bytes, bytes] | None:
        """The next whole frame of the buffer, taken out of it (None: not all read yet)."""
        head = _RELP_HEADER.match(self._buffer)
        if head is None:
            return None
        length = int(head[3])
        start = head.end() if length else head.end() - 1  # DATALEN 0: the LF ends the frame
        end = start + length
        if len(self._buffer) < end + 1:
            return None
        body, self._buffer = self._buffer[start:end], self._buffer[end + 1 :]
        return int(head[1]), head[2], body


#: TXNR SP COMMAND SP DATALEN, then SP DATA or the LF of an empty frame
_RELP_HEADER = re.compile(rb"(\d{1,9}) ([a-z]{1,32}) (\d{1,9})[ \n]")
