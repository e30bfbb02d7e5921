"""Hostile datagrams against a running ``SyslogSource`` (SourceHost, ``udp:`` and ``unixgram:``
listeners), with well-behaved TCP and UDP senders at the same time whose every message arrives.

And UDP loss made visible: datagrams the kernel drops because our receive buffer is full are
counted in ``ListenerStats.kernel_drops`` (the ``drops`` column of ``/proc/net/udp``), so that
every datagram sent is accounted for: ``received + kernel_drops == sent``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from syslogsrc.testing import HOSTILE_BYTES, GoodSender, ListeningSource, peak_rss

#: Peak RSS growth allowed while one hostile case runs (as in test_hostile_streams.py).
RSS_BOUND = 24 * 1024 * 1024
WAIT = 15.0
UDP_MAX = 65507  #: the largest UDP payload over IPv4


class GoodUDPSender(threading.Thread):
    """``count`` datagrams ``good-NAME-i``, one every ``interval`` s (slow enough for loopback
    never to drop one)."""

    def __init__(
        self, h: ListeningSource, name: str, port: int, count: int = 100, interval: float = 0.005
    ):
        super().__init__(daemon=True)
        self.h, self.tag, self.port, self.count, self.interval = h, name, port, count, interval

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(self.count):
                s.sendto(b"<13>Nov 24 06:00:00 good app: good-%s-%d" % (self.tag.encode(), i),
                         ("127.0.0.1", self.port))  # fmt: skip
                time.sleep(self.interval)

    def check(self) -> None:
        self.join(WAIT)
        out = self.h.output
        assert self.h.wait(lambda: len(out.good.get(self.tag, [])) >= self.count)
        assert out.good[self.tag] == list(range(self.count))


def udp_hostile(**options: object) -> ListeningSource:
    return ListeningSource("udp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.1", **options)


def test_empty_datagrams_are_counted_and_logged_once_not_posted() -> None:
    with udp_hostile() as h:
        tcp = GoodSender(h, "tcp-empty", port=h.port(1))
        udp = GoodUDPSender(h, "udp-empty", h.port(0))
        tcp.start()
        udp.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(1000):
                s.sendto(b"", ("127.0.0.1", h.port(0)))
        tcp.check()
        udp.check()
        stats = h.stats(0)
        assert h.wait(lambda: stats.malformed == 1000)
        assert h.output.others == 0
        assert stats.received == stats.posted == udp.count
        assert len(h.logs.matching(r"ignored \d+ empty datagram")) == 1
        h.stop()
        lines = h.logs.matching(r"ignored \d+ empty datagram")
        assert [line.split("ignored ")[1].split()[0] for line in lines] == ["1", "999"]


@pytest.mark.parametrize("max_size", [65536, 8192])
def test_65507_byte_datagrams(max_size: int) -> None:
    with udp_hostile(max_message_size=max_size, format="raw") as h:
        udp = GoodUDPSender(h, "udp-big", h.port(0))
        udp.start()
        payload = b"<13>Nov 24 06:00:00 h app: " + b"B" * (UDP_MAX - 27)
        assert len(payload) == UDP_MAX
        with peak_rss() as rss, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(200):  # 13 MB
                s.sendto(payload, ("127.0.0.1", h.port(0)))
                time.sleep(0.0005)
            stats = h.stats(0)
            assert h.wait(lambda: h.output.others == 200)
        udp.check()
        assert set(h.output.lengths[:200]) == {min(UDP_MAX, max_size)}
        assert stats.kernel_drops == 0
        assert rss.growth < RSS_BOUND, rss.growth
        if max_size < UDP_MAX:
            assert stats.truncated == 200
            assert len(h.logs.matching(r"truncated \d+ message")) == 1
        else:
            assert stats.truncated == 0
        assert not h.logs.errors()


def test_invalid_utf8_and_nul_in_datagrams_byte_for_byte() -> None:
    with udp_hostile(format="raw") as h:
        udp = GoodUDPSender(h, "udp-utf8", h.port(0))
        udp.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for m in [*HOSTILE_BYTES, b"\x00", b"\x00" * 100, b"trailing NUL\x00"]:
                s.sendto(m, ("127.0.0.1", h.port(0)))
        udp.check()
        assert h.wait(lambda: h.output.others == len(HOSTILE_BYTES) + 3)
        # trailing NULs (and LFs) are stripped, as syslog-ng does; nothing else is touched
        assert sorted(h.output.samples) == sorted([*HOSTILE_BYTES, b"", b"", b"trailing NUL"])
        assert not h.logs.errors()


def test_unixgram_empty_and_oversized_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    with ListeningSource(f"unixgram:{path}", "tcp:0:interface=127.0.0.1", max_message_size=4096,
                 format="raw") as h:  # fmt: skip
        tcp = GoodSender(h, "unixgram", port=h.port(1))
        tcp.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for _ in range(100):
                s.sendto(b"", str(path))
                s.sendto(b"x" * 100_000, str(path))
        tcp.check()
        stats = h.stats(0)
        assert h.wait(lambda: h.output.others == 100)
        assert set(h.output.lengths) == {4096}
        assert (stats.malformed, stats.truncated, stats.kernel_drops) == (100, 100, 0)


# ---------------------------------------------------------------------------------------------
# kernel drops


def test_socket_drops_reads_the_kernel_counter() -> None:
    from syslogsrc.protocols.datagram import socket_drops

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        rx.bind(("127.0.0.1", 0))
        assert socket_drops(rx) == 0
        for _ in range(200):  # nobody reads: most of these overflow the buffer
            tx.sendto(b"z" * 1000, rx.getsockname())
        drops = socket_drops(rx)
        rx.setblocking(False)
        read = 0
        while True:
            try:
                rx.recv(2000)
                read += 1
            except BlockingIOError:
                break
        assert drops is not None and drops > 0
        assert read + drops == 200
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
        assert socket_drops(unix) is None


def test_kernel_drops_are_counted_so_every_datagram_is_accounted_for() -> None:
    # A stalled output suspends the source: the UDP socket is not read, its (small) receive
    # buffer fills and the kernel drops the rest. received + kernel_drops == sent, exactly.
    sent = 3000
    with udp_hostile(so_rcvbuf=65536, log_iw_size=50) as h:
        stats = h.stats(0)
        h.output.hold()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(sent):
                s.sendto(b"<13>Nov 24 06:00:00 h app: flood %d" % i, ("127.0.0.1", h.port(0)))
        h.output.release()
        assert h.wait(lambda: stats.received + stats.kernel_drops == sent), stats
        assert stats.kernel_drops > 0
        assert stats.received == stats.posted
        tcp = GoodSender(h, "after-drops", port=h.port(1))  # and serving goes on
        tcp.start()
        tcp.check()
        assert h.wait(lambda: h.output.others == stats.received)
        assert len(h.logs.matching(r"the kernel dropped")) == 1
        h.stop()
        assert stats.received + stats.kernel_drops == sent
        assert f"kernel_drops={stats.kernel_drops}" in " ".join(h.logs.matching(r"stopped:"))
