"""A source under load or hostile input: the running source, its output and log, well-behaved
senders beside the traffic, hostile bytes, memory (:mod:`syslogsrc.testing`)."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from syslogsrc.host import SourceHost
from syslogsrc.testing._clients import http_post
from syslogsrc.testing._sockets import WAIT

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
