"""Listener specs: one syntax for every transport, and one table entry per kind of listener.

A listen option is a whitespace-separated list of specs::

    tcp:5514:interface=127.0.0.1  udp:5514  unix:/run/syslogsrc.sock  http:8080

Each spec is a Twisted endpoint string (see :func:`twisted.internet.endpoints.serverFromString`):
``kind:positional:name=value...``, with ``\\`` escaping a ``:``, ``=``, ``\\`` or whitespace,
cut into arguments by Twisted's own tokenizer. Stream kinds are Twisted's — ``tcp``, ``tcp6``,
``ssl``, ``unix``, ``systemd``, and the ``haproxy:`` wrapper (PROXY protocol v1/v2) in front of
any of them — and take Twisted's arguments with Twisted's defaults. ``udp``, ``udp6``,
``unixgram``, ``http`` and ``https`` are ours, in the same style. docs/listeners.md has the
whole grammar.

The shape is that of ``twisted.internet.endpoints``: the grammar is parsed in one place and
dispatched to one small parser per kind; here the dispatch table, :data:`LISTENER_KINDS`, also
says how each kind starts, so that a kind is one :class:`ListenerKind` entry: its name, its
transport, its argument parser, and a :class:`StreamStart` (an endpoint and a protocol factory)
or a :class:`DatagramStart` (a port). :func:`parse_spec` and :func:`make_listener` know no kind
by name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IProtocolFactory
from twisted.protocols.haproxy import proxyEndpoint

from syslogsrc import _listenspec
from syslogsrc._listeners import DatagramListener, IListener, Listener, StreamListener
from syslogsrc._listenspec import (
    Fields,
    ListenSpec,
    SpecError,
    parse_systemd,
    parse_tcp,
    parse_tcp6,
    parse_tcp_port,
    parse_tls,
    parse_udp,
    parse_udp6,
    parse_unix,
    parse_unixgram,
)
from syslogsrc._ports import (
    _OpenDatagramPort,
    _StreamEndpoint,
    systemd_endpoint,
    tcp_endpoint,
    udp_port,
    unix_endpoint,
    unixgram_port,
)
from syslogsrc.access import AllowList, ListenerAccess, TokenBuckets, default_burst
from syslogsrc.interfaces import IMessageSink, ListenerStats
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.datagram import SyslogDatagramProtocol
from syslogsrc.protocols.stream import SyslogStreamFactory

__all__ = [
    "KINDS",
    "LISTENER_KINDS",
    "DatagramListener",
    "DatagramStart",
    "IListener",
    "ListenSpec",
    "Listener",
    "ListenerKind",
    "StreamListener",
    "StreamStart",
    "make_listener",
    "parse_listen",
    "parse_spec",
    "protocol_factory",
]

#: How a stream kind makes its protocol factory:
#: ``(spec, reactor, sink, options, stats, access) -> IProtocolFactory``. ``access`` is the
#: listener's allow list and rate limit (None: none), for a factory that answers them itself.
_MakeFactory = Callable[
    [ListenSpec, Any, IMessageSink, ListenerOptions, ListenerStats, ListenerAccess | None],
    IProtocolFactory,
]


def protocol_factory(cls: type | str) -> _MakeFactory:
    """The ``factory`` of a :class:`StreamStart` for a factory class built as
    ``cls(reactor, sink, options, stats, transport_name)`` (plus ``format=`` when the spec has
    one), :class:`~syslogsrc.protocols.stream.SyslogStreamFactory`'s shape. ``cls`` may be
    ``"module:Name"``: imported when the first listener of the kind is made, so that an
    optional protocol costs nothing to those who do not listen with it."""
    return _ClassFactory(cls)


@attrs.frozen
class _ClassFactory:
    """:func:`protocol_factory`'s result: a value, so that a table entry compares and prints
    by the class it names."""

    cls: type | str

    def __call__(
        self,
        spec: ListenSpec,
        reactor: Any,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        access: ListenerAccess | None,
    ) -> IProtocolFactory:
        factory_class = self.cls
        if isinstance(factory_class, str):
            module, _, name = factory_class.partition(":")
            factory_class = getattr(importlib.import_module(module), name)
        extra = {} if spec.format is None else {"format": spec.format}
        factory: IProtocolFactory = factory_class(
            reactor, sink, options, stats, spec.transport, **extra
        )
        return factory


def _http_site(
    spec: ListenSpec,
    reactor: Any,
    sink: IMessageSink,
    options: ListenerOptions,
    stats: ListenerStats,
    access: ListenerAccess | None,
) -> IProtocolFactory:
    # Imported here: the HTTP protocol is optional (and twisted.web is big).
    from syslogsrc.protocols.http import HTTPIngestSite

    return HTTPIngestSite(reactor, sink, options, stats, transport=spec.transport, access=access)


@attrs.frozen
class StreamStart:
    """How a connection-oriented kind starts: its connections come through ``endpoint`` to the
    protocol ``factory`` makes, behind the connection tracker (limits, idle timeouts), and
    behind the PROXY header reader when the spec is under ``haproxy:``."""

    factory: _MakeFactory
    endpoint: _StreamEndpoint = tcp_endpoint
    #: TLS from the spec's privateKey=, certKey=, ... (else the tls-* options), reloadable
    tls: bool = False
    #: the protocol answers senders outside the allow list or over their rate itself (HTTP: 403,
    #: 429), so the tracker lets them connect
    answers_access: bool = False


@attrs.frozen
class DatagramStart:
    """How a datagram kind starts: a
    :class:`~syslogsrc.protocols.datagram.SyslogDatagramProtocol` reads the port ``port`` opens
    (reading at once; the listener stops it if the sink paused meanwhile)."""

    port: _OpenDatagramPort


@attrs.frozen
class ListenerKind:
    """One kind of spec: its grammar and how it starts. Adding a kind is adding one of these
    to :data:`LISTENER_KINDS`."""

    name: str  #: the spec's first field, e.g. "tcp"
    transport: str  #: what its messages carry as ``Origin.transport`` (a parser may override)
    #: the spec's positional and keyword arguments, as Twisted's tokenizer cuts them (the
    #: per-listener settings taken out) -> ListenSpec fields; raises SpecError. Its signature
    #: is the kind's grammar: the usage text of an error is made from it.
    parse: Callable[..., Fields]
    start: StreamStart | DatagramStart
    #: of the per-listener settings framing= and format=, the ones the kind takes
    takes: frozenset[str] = frozenset({"framing", "format"})
    #: ``haproxy:`` may wrap it (Twisted's stream kinds: their connections come from a proxy)
    proxyable: bool = False


_SYSLOG_STREAM = protocol_factory(SyslogStreamFactory)
_NO_FRAMING = frozenset({"format"})  # datagrams: one message each; RELP frames its own
_RELP = protocol_factory("syslogsrc.protocols.relp:RelpFactory")

#: Every kind of spec, by name: adding a kind is adding its entry here.
LISTENER_KINDS: dict[str, ListenerKind] = {
    kind.name: kind
    for kind in (
        # Twisted's stream kinds, with Twisted's arguments and defaults; haproxy: wraps them.
        ListenerKind("tcp", "tcp", parse_tcp, StreamStart(_SYSLOG_STREAM), proxyable=True),
        ListenerKind("tcp6", "tcp", parse_tcp6, StreamStart(_SYSLOG_STREAM), proxyable=True),
        ListenerKind(
            "ssl", "tls", parse_tls, StreamStart(_SYSLOG_STREAM, tls=True), proxyable=True
        ),
        ListenerKind(
            "unix", "unix", parse_unix, StreamStart(_SYSLOG_STREAM, unix_endpoint), proxyable=True
        ),
        ListenerKind(
            "systemd",
            "tcp",  # the parser says "unix" for domain=UNIX
            parse_systemd,
            StreamStart(_SYSLOG_STREAM, systemd_endpoint),
            proxyable=True,
        ),
        # Ours, in the same style.
        ListenerKind("udp", "udp", parse_udp, DatagramStart(udp_port), _NO_FRAMING),
        ListenerKind("udp6", "udp", parse_udp6, DatagramStart(udp_port), _NO_FRAMING),
        ListenerKind(
            "unixgram", "unixgram", parse_unixgram, DatagramStart(unixgram_port), _NO_FRAMING
        ),
        # HTTP: the Content-Type says the format, so neither setting applies. No reuseport=:
        # one HTTP site per port.
        ListenerKind(
            "http",
            "http",
            parse_tcp_port,
            StreamStart(_http_site, answers_access=True),
            frozenset(),
        ),
        ListenerKind(
            "https",
            "https",
            parse_tls,
            StreamStart(_http_site, tls=True, answers_access=True),
            frozenset(),
        ),
        # RELP (rsyslog's omrelp): its own framing; every message answered once stored.
        ListenerKind(
            "relp", "relp", parse_tcp_port, StreamStart(_RELP), _NO_FRAMING, proxyable=True
        ),
        ListenerKind(
            "relps", "relps", parse_tls, StreamStart(_RELP, tls=True), _NO_FRAMING, proxyable=True
        ),
    )
}


class _Transports(Mapping[str, str]):
    """:data:`KINDS`: a live view of :data:`LISTENER_KINDS`, so the two never disagree."""

    def __getitem__(self, name: str) -> str:
        return LISTENER_KINDS[name].transport

    def __iter__(self) -> Iterator[str]:
        return iter(LISTENER_KINDS)

    def __len__(self) -> int:
        return len(LISTENER_KINDS)

    def __repr__(self) -> str:
        return repr(dict(self))


#: Every kind of spec, and the transport name its messages carry (``Origin.transport``).
KINDS: Mapping[str, str] = _Transports()

# The one splitter of the listen option (syslogsrc.optiontable.split_listen uses it too).
_split_specs = _listenspec.split_specs


# --- Parsing ----------------------------------------------------------------------------------


def parse_listen(text: str) -> list[ListenSpec]:
    """Parse a whitespace-separated list of specs (an empty text gives an empty list)."""
    return [parse_spec(spec) for spec in _listenspec.split_specs(text)]


def parse_spec(text: str) -> ListenSpec:
    """Parse one spec; raise ``OptionError("listen", text, why)`` if it is not valid."""
    try:
        return _parse_spec(text)
    except SpecError as e:
        raise OptionError("listen", text, str(e)) from None


def _parse_spec(text: str) -> ListenSpec:
    args, kwargs = _listenspec.arguments(text)
    proxy = bool(args) and args[0] == "haproxy"
    if proxy:
        # As Twisted's haproxy: parser does: the rest is the wrapped spec, keywords included.
        args = args[1:]
        kind = LISTENER_KINDS.get(args[0]) if args else None
        if kind is None or not kind.proxyable:
            wrappable = [k.name for k in LISTENER_KINDS.values() if k.proxyable]
            raise SpecError(f"haproxy: wraps one of {', '.join(wrappable)}")
    name = args[0] if args else ""
    kind = LISTENER_KINDS.get(name)
    if kind is None:
        raise SpecError(f"unknown kind {name!r}: must be one of haproxy, {', '.join(KINDS)}")
    common = _listenspec.common_settings(name, kind.takes, kwargs)
    try:
        inspect.signature(kind.parse).bind(*args[1:], **kwargs)
    except TypeError as e:
        raise SpecError(f"{e}; usage: {_usage(kind)}") from None
    fields = {"transport": kind.transport, **kind.parse(*args[1:], **kwargs), **common}
    spec = ListenSpec(text=text, kind=name, proxy=proxy, **fields)
    if not spec.addressed:
        for setting in _listenspec.ACCESS_SETTINGS:
            if getattr(spec, setting) is not None:
                raise SpecError(
                    f"{setting}= applies to senders with an IP address; unix sockets have none"
                    " (haproxy:unix: takes it, from the PROXY header)"
                )
    return spec


def _usage(kind: ListenerKind) -> str:
    usage = kind.name
    for p in inspect.signature(kind.parse).parameters.values():
        required = p.default is inspect.Parameter.empty
        usage += f":{p.name.upper()}" if required else f"[:{p.name}=...]"
    return usage


# --- Building listeners: what the kind's entry says -------------------------------------------


def make_listener(
    spec: ListenSpec, reactor: Any, sink: IMessageSink, options: ListenerOptions
) -> Listener:
    """The listener for ``spec``, not started yet. TLS files are read now: a bad one raises
    :class:`~syslogsrc.options.OptionError`."""
    start = LISTENER_KINDS[spec.kind].start
    stats = ListenerStats(name=spec.text)
    if spec.framing is not None:
        options = attrs.evolve(options, framing=spec.framing)
    if isinstance(start, DatagramStart):
        access = _access(spec, reactor, options, stats, "datagram")
        protocol = SyslogDatagramProtocol(
            reactor, sink, options, stats, spec.transport, format=spec.format
        )
        protocol.access = access  # asked first thing for each datagram
        listener = DatagramListener(spec, reactor, stats, protocol, start.port)
        listener.access = access
        return listener

    what = "request" if start.answers_access else "connection"
    access = _access(spec, reactor, options, stats, what)
    flushers: list[Callable[[], None]] = []
    if access is not None:
        flushers.append(access.flush_logs)
    factory = start.factory(spec, reactor, sink, options, stats, access)
    flush_logs = getattr(factory, "flush_logs", None)
    if flush_logs is not None:
        flushers.append(flush_logs)
    tls = None
    if start.tls:
        from syslogsrc.protocols.tls import ReloadableTLS, tls_server_factory

        tls = ReloadableTLS.from_options(
            options,
            name=spec.text,
            reactor=reactor,
            private_key=spec.private_key,
            cert_key=spec.cert_key,
            extra_cert_chain=spec.extra_cert_chain,
            dh_parameters=spec.dh_parameters,
        )
        factory, watch = tls_server_factory(reactor, factory, tls, stats)
        flushers.append(watch.flush_logs)
    tracker = ConnectionTracker(
        reactor,
        factory,
        options,
        stats,
        access=None if start.answers_access else access,
        proxied=spec.proxy,
    )
    endpoint = start.endpoint(spec, reactor)
    if spec.proxy:
        # The PROXY header is read first, outside the tracker and TLS: HAProxy (send-proxy) and
        # nginx (proxy_protocol) send it in clear before the TLS handshake. (Twisted's own
        # haproxy:ssl: would expect it inside TLS.)
        endpoint = proxyEndpoint(endpoint)
    return StreamListener(
        spec, reactor, stats, endpoint, tracker, flushers, tls, options.tls_reload_interval
    )


def _access(
    spec: ListenSpec, reactor: Any, options: ListenerOptions, stats: ListenerStats, what: str
) -> ListenerAccess | None:
    """The listener's allow list and rate limit: the spec's, else the options'; None when
    there are neither (or senders have no address: unix sockets)."""
    if not spec.addressed:
        return None
    allow = spec.allow if spec.allow is not None else options.allow
    rate = spec.rate if spec.rate is not None else options.rate
    burst = spec.burst if spec.burst is not None else options.burst
    buckets = None
    if rate is not None:
        buckets = TokenBuckets(reactor, rate, burst if burst is not None else default_burst(rate))
    elif spec.burst is not None:
        raise OptionError("listen", spec.text, "burst= needs a rate (rate= or the rate option)")
    if not allow and buckets is None:
        return None
    return ListenerAccess(
        reactor, stats, allow=AllowList(allow) if allow else None, buckets=buckets, what=what
    )
