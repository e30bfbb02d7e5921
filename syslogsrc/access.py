"""Who may send, and how fast: allow lists and per-sender rate limits of one listener.

This module decides; the protocols only ask it, at their edges:

- stream connections (tcp, tls, unix with a PROXY header, systemd): the connection tracker
  (``syslogsrc.protocols._tracking``) refuses a connection from outside the allow list before
  anything is read or any TLS handshake made (behind ``haproxy:``, at the first bytes after the
  PROXY header, which is when the sender's address is known), and *pauses reading* a connection
  whose sender went over its rate;
- datagrams: :class:`~syslogsrc.protocols.datagram.SyslogDatagramProtocol` asks
  :meth:`ListenerAccess.admit_datagram` before it looks at a datagram; no is a drop;
- HTTP: the resource answers 403 (allow list) and 429 with ``Retry-After`` (rate).

An allow list is a set of IPv4 and IPv6 networks; an IPv4-mapped IPv6 sender (``::ffff:10.1.2.3``,
what a dual-stack socket reports for an IPv4 client) is matched as the IPv4 address it maps.

A rate limit is a token bucket per sender address: ``rate`` tokens a second, at most ``burst``
kept. A message costs one token. Datagrams and HTTP requests are let in while the sender holds
a token (an HTTP request is then charged all its messages, perhaps going into debt); a stream
connection is charged for the frames each read decoded, and paused until its debt is repaid.

The table of buckets is bounded (:data:`MAX_SENDERS` per listener, least recently seen first
out), whatever the number of senders (a UDP flood from spoofed addresses): a sender that was
pushed out comes back with a full bucket, as one not heard from for a while would have.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import LogLevel

from syslogsrc.interfaces import ListenerStats
from syslogsrc.protocols._ratelimit import RateLimitedLog

__all__ = [
    "MAX_SENDERS",
    "MIN_WAIT",
    "AllowList",
    "ListenerAccess",
    "TokenBuckets",
    "default_burst",
    "parse_allow",
    "sender_host",
]

#: Senders whose buckets one listener remembers (about 230 bytes each).
MAX_SENDERS = 10_000
#: The shortest wait for a token (seconds).
MIN_WAIT = 0.001
_EPSILON = 1e-6

_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6 addresses
_MAPPED_NETWORK = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_allow(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"10.0.0.0/8, ::1"`` (commas and/or whitespace between) or a sequence of networks ->
    the networks, normalised (``"::1/128"``). Raises ``ValueError`` saying what is wrong."""
    words = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    networks: list[str] = []
    for word in words:
        word = word.strip()
        try:
            network = ipaddress.ip_network(word, strict=True)
        except ValueError as e:
            if "host bits set" in str(e):
                fixed = ipaddress.ip_network(word, strict=False)
                raise ValueError(f"{word!r} has host bits set (did you mean {fixed}?)") from None
            raise ValueError(f"{word!r} is not an IP address or network (CIDR)") from None
        networks.append(str(network))
    if not networks:
        raise ValueError("no network given (an allow list of nothing would deny everyone)")
    return tuple(networks)


def _packed(host: str) -> tuple[int, int] | None:
    """``host`` (an IP literal) -> (4 or 6, the address as an int); IPv4-mapped IPv6 addresses
    are IPv4. None for anything else."""
    try:
        if ":" in host:
            packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            if packed[:12] == _MAPPED_PREFIX:
                return 4, int.from_bytes(packed[12:], "big")
            return 6, int.from_bytes(packed, "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except (OSError, ValueError, TypeError):
        return None


class AllowList:
    """Networks a sender's address must fall in. :meth:`allows` takes an IP literal."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(networks)
        self._v4: list[tuple[int, int]] = []
        self._v6: list[tuple[int, int]] = []
        for text in self.networks:
            network: Any = ipaddress.ip_network(text)
            if network.version == 6 and network.subnet_of(_MAPPED_NETWORK):
                # ::ffff:10.0.0.0/104 is 10.0.0.0/8, which is how mapped senders are matched
                network = ipaddress.IPv4Network(
                    (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
                )
            table = self._v4 if network.version == 4 else self._v6
            table.append((int(network.network_address), int(network.netmask)))

    def allows(self, host: str | None) -> bool:
        """True when ``host`` is in one of the networks; a sender without an IP address (a
        unix socket) or with something else is not."""
        if host is None:
            return False
        address = _packed(host)
        if address is None:
            return False
        version, value = address
        for network, mask in self._v4 if version == 4 else self._v6:
            if value & mask == network:
                return True
        return False

    def __str__(self) -> str:
        return ",".join(self.networks)


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


def default_burst(rate: float) -> int:
    """The burst of a rate given without one: a second's worth, at least one message."""
    return max(1, math.ceil(rate))


class TokenBuckets:
    """One token bucket per sender: ``rate`` tokens a second, at most ``burst`` kept.

    The table holds at most ``max_senders`` buckets; past that, the least recently seen sender
    is forgotten (a sender not seen among ``max_senders`` more recent ones has, unless it is
    a stream sender deep in debt, refilled its bucket anyway).
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: int,
        *,
        max_senders: int = MAX_SENDERS,
    ) -> None:
        if rate <= 0 or burst < 1 or max_senders < 1:
            raise ValueError("rate > 0, burst >= 1 and max_senders >= 1")
        self.clock = clock
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_senders = max_senders
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.forgotten = 0  #: buckets pushed out of the full table

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, host: str) -> _Bucket:
        now = self.clock.seconds()
        buckets = self._buckets
        bucket = buckets.get(host)
        if bucket is None:
            bucket = buckets[host] = _Bucket(self.burst, now)
            if len(buckets) > self.max_senders:
                buckets.popitem(last=False)
                self.forgotten += 1
        else:
            buckets.move_to_end(host)
            elapsed = now - bucket.stamp
            if elapsed > 0:
                bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.stamp = now
        return bucket

    def tokens(self, host: str) -> float:
        """The tokens ``host`` holds now (negative: in debt)."""
        return self._bucket(host).tokens

    def wait(self, tokens: float) -> float:
        """Seconds until a sender holding ``tokens`` holds one: 0 if it does. Never less than
        :data:`MIN_WAIT` otherwise (the refill is computed in floats: a timer set for the last
        1e-12 of a token would fire at once, and again, without a token more)."""
        if tokens >= 1 - _EPSILON:
            return 0.0
        return max(MIN_WAIT, (1 - tokens) / self.rate)

    def admit(self, host: str, cost: int = 1) -> float:
        """If ``host`` holds a token, charge it ``cost`` (it may go into debt) and return 0;
        else charge nothing and return the seconds until it holds one."""
        bucket = self._bucket(host)
        wait = self.wait(bucket.tokens)
        if not wait:
            bucket.tokens -= cost
        return wait

    def charge(self, host: str, cost: int) -> float:
        """Charge ``host`` for ``cost`` messages already taken; return the seconds until its
        debt is repaid (0 when it is not in debt)."""
        bucket = self._bucket(host)
        bucket.tokens -= cost
        return -bucket.tokens / self.rate if bucket.tokens < 0 else 0.0


def sender_host(address: Any) -> str | None:
    """The IP literal of a Twisted address (``IPv4Address``, ``IPv6Address``, PROXY header
    addresses) or of a datagram sender ``(host, port)``; None for unix sockets. IPv4-mapped
    IPv6 addresses are given as IPv4 (one sender, one bucket)."""
    host = address[0] if isinstance(address, tuple) else getattr(address, "host", None)
    if not isinstance(host, str) or not host:
        return None
    if host[:7].lower() == "::ffff:" and "." in host:
        return host[7:]
    return host


def _peer_text(peer: Any) -> str:
    """``192.0.2.7:514``, ``[::1]:514`` for a Twisted address; anything else as it is."""
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:
        return str(peer)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _datagram_peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr or "a unix socket")


class ListenerAccess:
    """The allow list and rate limit of one listener, with its counters and logs.

    ``what`` names the unit the listener denies or limits in its log lines ("connection",
    "datagram", "request").
    """

    def __init__(
        self,
        clock: IReactorTime,
        stats: ListenerStats,
        *,
        allow: AllowList | None = None,
        buckets: TokenBuckets | None = None,
        what: str = "connection",
    ) -> None:
        self.clock = clock
        self.stats = stats
        self.allow = allow
        self.buckets = buckets
        self.deny_log = RateLimitedLog(
            clock,
            "{listener}: denied {count} {what}(s){span} from outside allow({allow});"
            " last from {peer}",
            listener=stats.name,
            what=what,
            allow=str(allow),
        )
        actions = {
            "connection": "the connection paused until the sender is within its rate",
            "datagram": "the datagram dropped",
            "request": "answered 429",
        }
        self.limit_log = RateLimitedLog(
            clock,
            "{listener}: senders went over rate({rate}) burst({burst}) {count} time(s){span}:"
            " each time {action}; last {peer}",
            level=LogLevel.info if what == "connection" else LogLevel.warn,
            listener=stats.name,
            rate=f"{buckets.rate:g}" if buckets else None,
            burst=f"{buckets.burst:g}" if buckets else None,
            action=actions.get(what, what),
        )

    #: a Twisted address -> the sender's IP literal (None: a unix socket)
    host_of = staticmethod(sender_host)

    def allows(self, host: str | None, peer: object) -> bool:
        """True when the sender may come in; else counts and logs a denial."""
        allow = self.allow
        if allow is None or allow.allows(host):
            return True
        self.stats.denied += 1
        self.deny_log(peer=_peer_text(peer) if peer is not None else host)
        return False

    def limited(self, host: str | None, peer: object) -> None:
        """Count and log one time a sender went over its rate."""
        self.stats.rate_limited += 1
        self.limit_log(peer=_peer_text(peer) if peer is not None else host)

    def admit_datagram(self, addr: Any) -> bool:
        """Whether a datagram from ``addr`` (``(host, port)``) is taken: in the allow list and
        within the sender's rate. A refusal is counted and logged."""
        host = sender_host(addr)
        if self.allow is not None and not self.allows(host, _datagram_peer(addr)):
            return False
        buckets = self.buckets
        if buckets is not None and host is not None and buckets.admit(host):
            self.limited(host, _datagram_peer(addr))
            return False
        return True

    def flush_logs(self) -> None:
        self.deny_log.flush()
        self.limit_log.flush()
