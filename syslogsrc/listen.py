"""Listener specs: one syntax for every transport, parsed here and nowhere else.

A listen option is a whitespace-separated list of specs::

    tcp:5514:interface=127.0.0.1  udp:5514  unix:/run/syslogsrc.sock  http:8080

Each spec is a Twisted endpoint string (see :func:`twisted.internet.endpoints.serverFromString`):
``kind:positional:name=value...``, with ``\\`` escaping a ``:``, ``=``, ``\\`` or whitespace.
Stream kinds are Twisted's — ``tcp``, ``tcp6``, ``ssl``, ``unix``, ``systemd``, and the
``haproxy:`` wrapper (PROXY protocol v1/v2) in front of any of them — and take Twisted's
arguments with Twisted's defaults. ``udp``, ``udp6``, ``unixgram``, ``http`` and ``https`` are
ours, in the same style. docs/listeners.md has the whole grammar.

The shape is that of ``twisted.internet.endpoints``: ``_tokenize`` and ``_parse`` cut a
spec into arguments, ``_PARSERS`` dispatches to one small parser per kind, and
:func:`make_listener` builds one small :class:`Listener` class per transport family.
"""

from __future__ import annotations

import inspect
import ipaddress
import math
import os
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet import tcp, udp
from twisted.internet.defer import (
    Deferred,
    execute,
    fail,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.haproxy import proxyEndpoint
from twisted.python.systemd import ListenFDs
from zope.interface import Attribute, Interface, implementer

from syslogsrc.access import AllowList, ListenerAccess, TokenBuckets, default_burst, parse_allow
from syslogsrc.handover import ConnectionState, ListenerState
from syslogsrc.interfaces import IMessageSink, ListenerStats
from syslogsrc.options import FRAMINGS, ListenerOptions, OptionError
from syslogsrc.parsing import FORMATS
from syslogsrc.protocols._tracking import ConnectionTracker
from syslogsrc.protocols.datagram import SyslogDatagramProtocol
from syslogsrc.protocols.stream import SyslogStreamFactory, origin_of

if TYPE_CHECKING:
    from syslogsrc.protocols.tls import ReloadableTLS

_log = Logger(namespace="syslogsrc.listen")

__all__ = [
    "KINDS",
    "DatagramListener",
    "IListener",
    "ListenSpec",
    "Listener",
    "StreamListener",
    "make_listener",
    "parse_listen",
    "parse_spec",
]

#: Every kind of spec, and the transport name its messages carry (``Origin.transport``).
KINDS: dict[str, str] = {
    "tcp": "tcp",
    "tcp6": "tcp",
    "ssl": "tls",
    "unix": "unix",
    "systemd": "tcp",  # "unix" when domain=UNIX
    "udp": "udp",
    "udp6": "udp",
    "unixgram": "unixgram",
    "http": "http",
    "https": "https",
}
_PROXYABLE = ("tcp", "tcp6", "ssl", "unix", "systemd")  # what haproxy: may wrap (Twisted's kinds)
_DATAGRAM = ("udp", "udp6", "unixgram")


@attrs.frozen
class ListenSpec:
    """One parsed, validated listener spec. Fields a kind does not use keep their defaults."""

    text: str  #: the spec as written: the listener's name
    kind: str  #: a key of :data:`KINDS`
    transport: str  #: "tcp", "tls", "unix", "udp", "unixgram", "http" or "https"
    proxy: bool = False  #: haproxy: wrapper: each connection starts with a PROXY v1/v2 header
    port: int | None = None  #: 0 = any free port (see ``Listener.address``)
    path: str | None = None  #: unix and unixgram socket path
    interface: str = ""  #: address to bind: "" = all IPv4 addresses, "::" = all IPv6 (and v4)
    backlog: int = 50
    mode: int = 0o666  #: unix, unixgram: permissions of the socket file
    lockfile: bool = True  #: unix: guard the path with PATH.lock (and remove a stale socket)
    private_key: str | None = None  #: ssl, https: key file (PEM); else tls-key-file
    cert_key: str | None = None  #: ssl, https: certificate file (PEM); else tls-cert-file
    extra_cert_chain: str | None = None  #: ssl, https: intermediate certificates (PEM)
    dh_parameters: str | None = None  #: ssl, https: DH parameters file, for DHE ciphers
    domain: str | None = None  #: systemd: INET, INET6 or UNIX
    index: int | None = None  #: systemd: position among the inherited sockets
    fd_name: str | None = None  #: systemd: FileDescriptorName= of the inherited socket
    #: tcp, tcp6, udp, udp6: SO_REUSEPORT, so that several processes share the port (the
    #: kernel spreads connections and datagrams over them)
    reuseport: bool = False
    #: stream kinds but http/https: this listener's RFC 6587 framing (``framing=``); None: the
    #: source's ``framing`` option
    framing: str | None = None
    #: every kind but http/https: the format its messages are parsed with (``format=``); None:
    #: the source's ``format`` option
    format: str | None = None
    #: kinds with a sender address: the networks senders must be in (``allow=``); None: the
    #: source's ``allow`` option
    allow: tuple[str, ...] | None = None
    #: kinds with a sender address: messages per second per sender (``rate=``); None: the
    #: source's ``rate`` option
    rate: float | None = None
    #: kinds with a sender address: messages at once beyond the rate (``burst=``); None: the
    #: source's ``burst`` option, else a second's worth
    burst: int | None = None

    @property
    def stream(self) -> bool:
        """True for connection-oriented kinds (tracked connections)."""
        return self.kind not in _DATAGRAM

    @property
    def addressed(self) -> bool:
        """True when senders have an IP address: not unix sockets, unless behind haproxy:
        (the PROXY header gives one)."""
        return self.proxy or (self.kind != "unixgram" and self.transport != "unix")


# --- The grammar: Twisted's endpoint description syntax ----------------------------------------
#
#   listen   = *WSP spec *( 1*WSP spec ) *WSP
#   spec     = field *( ":" field )            ; kind first, then positional and name=value
#   field    = value / ( value "=" value )
#   value    = *( char / "\" any-char )         ; "\" makes the next character literal
#
# Escapes are resolved by _tokenize, exactly as twisted.internet.endpoints._tokenize does, so a
# spec means here what it means to serverFromString; whitespace splitting keeps them for it.

_OP, _STRING = range(2)


def _split_specs(text: str) -> Iterator[str]:
    """Cut a listen option at unescaped whitespace; escapes are left for ``_tokenize``."""
    current: list[str] = []
    chars = iter(text)
    for c in chars:
        if c == "\\":
            current.append(c)
            current.append(next(chars, ""))
        elif c.isspace():
            if current:
                yield "".join(current)
                current = []
        else:
            current.append(c)
    if current:
        yield "".join(current)


def _tokenize(description: str) -> Iterator[tuple[int, str]]:
    """Yield ``(_STRING, text)`` and ``(_OP, ":" or "=")`` tokens; after a ``=``, a ``=`` is
    text until the next ``:`` (so values may contain ``=``)."""
    current = ""
    ops = ":="
    chars = iter(description)
    for c in chars:
        if c in ops:
            yield _STRING, current
            yield _OP, c
            current = ""
            ops = ":=" if c == ":" else ":"
        elif c == "\\":
            current += next(chars, "")
        else:
            current += c
    yield _STRING, current


def _parse(description: str) -> tuple[list[str], dict[str, str]]:
    """``"a:b:d=1:c"`` -> ``(["a", "b", "c"], {"d": "1"})``, like Twisted's ``_parse``."""
    args: list[str] = []
    kwargs: dict[str, str] = {}
    sofar: list[str] = []

    def add() -> None:
        if len(sofar) == 1:
            args.append(sofar[0])
        else:
            kwargs[sofar[0]] = sofar[1]

    for kind, value in _tokenize(description):
        if kind is _STRING:
            sofar.append(value)
        elif value == ":":
            add()
            sofar = []
    add()
    return args, kwargs


# --- Value checks ---------------------------------------------------------------------------


class _Invalid(Exception):
    """Raised by a kind parser; parse_spec turns it into OptionError("listen", spec, why)."""


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise _Invalid(f"bad port {value!r}: must be 0 to 65535")
    return int(value)


def _interface(value: str, *, ipv6_only: bool = False) -> str:
    if value == "":
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise _Invalid(f"bad interface {value!r}: must be an IP address") from None
    if ipv6_only and address.version != 6:
        raise _Invalid(f"bad interface {value!r}: must be an IPv6 address")
    return value


def _positive(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise _Invalid(f"bad {name} {value!r}: must be a whole number >= 1")
    return int(value)


def _mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise _Invalid(f"bad mode {value!r}: must be octal, e.g. 660") from None
    if not 0 <= mode <= 0o7777:
        raise _Invalid(f"bad mode {value!r}: must be octal, e.g. 660")
    return mode


def _path(value: str) -> str:
    if not value:
        raise _Invalid("the socket path is empty")
    return value


_YES = ("yes", "true", "1")
_NO = ("no", "false", "0")


def _flag(name: str, value: str) -> bool:
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise _Invalid(f"bad {name} {value!r}: must be yes or no")


def _file(name: str, value: str | None) -> str | None:
    if value is not None and not value:
        raise _Invalid(f"{name}= is empty")
    return value


# --- One parser per kind: positional and keyword arguments as in the spec ---------------------
#
# The keyword names are Twisted's (camelCase); each parser returns ListenSpec fields.

Fields = dict[str, Any]


def _parse_tcp(
    port: str, interface: str = "", backlog: str = "50", reuseport: str = "no"
) -> Fields:
    return {
        "port": _port(port),
        "interface": _interface(interface),
        "backlog": _positive("backlog", backlog),
        "reuseport": _flag("reuseport", reuseport),
    }


def _parse_tcp6(
    port: str, interface: str = "::", backlog: str = "50", reuseport: str = "no"
) -> Fields:
    return {
        "port": _port(port),
        "interface": _interface(interface, ipv6_only=True),
        "backlog": _positive("backlog", backlog),
        "reuseport": _flag("reuseport", reuseport),
    }


def _parse_ssl(
    port: str,
    privateKey: str | None = None,
    certKey: str | None = None,
    interface: str = "",
    backlog: str = "50",
    extraCertChain: str | None = None,
    dhParameters: str | None = None,
) -> Fields:
    return {
        "port": _port(port),
        "interface": _interface(interface),
        "backlog": _positive("backlog", backlog),
        "private_key": _file("privateKey", privateKey),
        "cert_key": _file("certKey", certKey),
        "extra_cert_chain": _file("extraCertChain", extraCertChain),
        "dh_parameters": _file("dhParameters", dhParameters),
    }


def _parse_unix(
    address: str, mode: str = "666", backlog: str = "50", lockfile: str = "1"
) -> Fields:
    if lockfile not in ("0", "1"):
        raise _Invalid(f"bad lockfile {lockfile!r}: must be 0 or 1")
    return {
        "path": _path(address),
        "mode": _mode(mode),
        "backlog": _positive("backlog", backlog),
        "lockfile": lockfile == "1",
    }


def _parse_systemd(domain: str, index: str | None = None, name: str | None = None) -> Fields:
    if domain not in ("INET", "INET6", "UNIX"):
        raise _Invalid(f"bad domain {domain!r}: must be INET, INET6 or UNIX")
    if (index is None) == (name is None):
        raise _Invalid("give exactly one of index= and name=")
    if index is not None and not index.isdigit():
        raise _Invalid(f"bad index {index!r}: must be a whole number >= 0")
    return {
        "domain": domain,
        "index": None if index is None else int(index),
        "fd_name": name,
        "transport": "unix" if domain == "UNIX" else "tcp",
    }


def _parse_udp(port: str, interface: str = "", reuseport: str = "no") -> Fields:
    return {
        "port": _port(port),
        "interface": _interface(interface),
        "reuseport": _flag("reuseport", reuseport),
    }


def _parse_udp6(port: str, interface: str = "::", reuseport: str = "no") -> Fields:
    return {
        "port": _port(port),
        "interface": _interface(interface, ipv6_only=True),
        "reuseport": _flag("reuseport", reuseport),
    }


def _parse_unixgram(address: str, mode: str = "666") -> Fields:
    return {"path": _path(address), "mode": _mode(mode)}


def _parse_http(port: str, interface: str = "", backlog: str = "50") -> Fields:
    return _parse_tcp(port, interface, backlog)  # no reuseport: one HTTP site per port


_parse_https = _parse_ssl

_PARSERS: dict[str, Callable[..., Fields]] = {
    "tcp": _parse_tcp,
    "tcp6": _parse_tcp6,
    "ssl": _parse_ssl,
    "unix": _parse_unix,
    "systemd": _parse_systemd,
    "udp": _parse_udp,
    "udp6": _parse_udp6,
    "unixgram": _parse_unixgram,
    "http": _parse_http,
    "https": _parse_https,
}


def parse_spec(text: str) -> ListenSpec:
    """Parse one spec; raise ``OptionError("listen", text, why)`` if it is not valid."""
    try:
        return _parse_spec(text)
    except _Invalid as e:
        raise OptionError("listen", text, str(e)) from None


def _parse_spec(text: str) -> ListenSpec:
    proxy = False
    description = text
    args, kwargs = _parse(description)
    if args and args[0] == "haproxy":
        proxy = True
        description = text[len("haproxy:") :]
        args, kwargs = _parse(description)
        if not args or args[0] not in _PROXYABLE:
            raise _Invalid(f"haproxy: wraps one of {', '.join(_PROXYABLE)}")
    kind = args[0] if args else ""
    parser = _PARSERS.get(kind)
    if parser is None:
        raise _Invalid(f"unknown kind {kind!r}: must be one of haproxy, {', '.join(KINDS)}")
    common = _common_settings(kind, kwargs)
    try:
        inspect.signature(parser).bind(*args[1:], **kwargs)
    except TypeError as e:
        usage = _usage(kind, parser)
        raise _Invalid(f"{e}; usage: {usage}") from None
    fields = {"transport": KINDS[kind], **parser(*args[1:], **kwargs), **common}
    spec = ListenSpec(text=text, kind=kind, proxy=proxy, **fields)
    if not spec.addressed:
        for name in _ACCESS_SETTINGS:
            if getattr(spec, name) is not None:
                raise _Invalid(
                    f"{name}= applies to senders with an IP address; unix sockets have none"
                    " (haproxy:unix: takes it, from the PROXY header)"
                )
    return spec


#: Settings every kind they apply to takes, beside its own arguments: the per-listener form of
#: a source option (the option is the default).
_COMMON_SETTINGS = ("framing", "format", "allow", "rate", "burst")
#: Of those, the ones that need a sender address.
_ACCESS_SETTINGS = ("allow", "rate", "burst")


def _common_settings(kind: str, kwargs: dict[str, str]) -> Fields:
    """Take the per-listener settings out of ``kwargs`` and check them."""
    fields: Fields = {}
    framing = kwargs.pop("framing", None)
    if framing is not None:
        if kind in _DATAGRAM or kind in ("http", "https"):
            raise _Invalid(f"framing= applies to stream kinds (tcp, ssl, unix, ...), not {kind}")
        if framing not in FRAMINGS:
            raise _Invalid(f"bad framing {framing!r}: must be one of {', '.join(FRAMINGS)}")
        fields["framing"] = framing
    format = kwargs.pop("format", None)
    if format is not None:
        if kind in ("http", "https"):
            raise _Invalid("format= does not apply to http: the Content-Type says the format")
        if format not in FORMATS:
            raise _Invalid(f"bad format {format!r}: must be one of {', '.join(FORMATS)}")
        fields["format"] = format
    allow = kwargs.pop("allow", None)
    if allow is not None:
        try:
            fields["allow"] = parse_allow(allow)
        except ValueError as e:
            raise _Invalid(f"bad allow= {allow!r}: {e}") from None
    rate = kwargs.pop("rate", None)
    if rate is not None:
        try:
            value = float(rate)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise _Invalid(f"bad rate= {rate!r}: must be a number of messages per second > 0")
        fields["rate"] = value
    burst = kwargs.pop("burst", None)
    if burst is not None:
        if not burst.isdigit() or int(burst) < 1:
            raise _Invalid(f"bad burst= {burst!r}: must be a whole number >= 1")
        fields["burst"] = int(burst)
    return fields


def _usage(kind: str, parser: Callable[..., Fields]) -> str:
    usage = kind
    for p in inspect.signature(parser).parameters.values():
        required = p.default is inspect.Parameter.empty
        usage += f":{p.name.upper()}" if required else f"[:{p.name}=...]"
    return usage


def parse_listen(text: str) -> list[ListenSpec]:
    """Parse a whitespace-separated list of specs (an empty text gives an empty list)."""
    return [parse_spec(spec) for spec in _split_specs(text)]


# --- Listeners ----------------------------------------------------------------------------


class IListener(Interface):
    """One listening socket (or inherited one) and its connections, for one spec."""

    name = Attribute("The spec text.")
    transport = Attribute('"tcp", "tls", "unix", "udp", "unixgram", "http" or "https".')
    stats = Attribute("The listener's ListenerStats.")
    address = Attribute("The bound IAddress once started (port 0 -> the real port), else None.")

    def start() -> Deferred:
        """Start listening; the Deferred fires with the listener."""

    def reload_tls() -> bool | None:
        """Read this listener's TLS files again for new connections (established ones keep
        theirs): True if taken, False if they did not load (logged; the previous ones stay),
        None for a listener without TLS."""

    def stop() -> Deferred:
        """Stop listening and close every connection (gracefully, then aborted after a short
        grace); the Deferred fires with None when all are closed."""


@implementer(IListener)
class Listener:
    """Base of the listener of each transport family; see :class:`IListener`."""

    def __init__(self, spec: ListenSpec, reactor: Any, stats: ListenerStats) -> None:
        self.spec = spec
        self.name = spec.text
        self.transport = spec.transport
        self.stats = stats
        self.reactor = reactor
        self._port: IListeningPort | None = None

    @property
    def address(self) -> IAddress | None:
        return self._port.getHost() if self._port is not None else None

    def start(self) -> Deferred[Listener]:
        raise NotImplementedError

    def stop(self) -> Deferred[None]:
        raise NotImplementedError

    def reload_tls(self) -> bool | None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} address={self.address}>"


class StreamListener(Listener):
    """tcp, tcp6, ssl, unix, systemd (and their haproxy: forms), http, https."""

    def __init__(
        self,
        spec: ListenSpec,
        reactor: Any,
        stats: ListenerStats,
        endpoint: IStreamServerEndpoint,
        tracker: ConnectionTracker,
        log_flushers: Sequence[Callable[[], None]] = (),
        tls: ReloadableTLS | None = None,
        tls_reload_interval: float = 0,
    ) -> None:
        super().__init__(spec, reactor, stats)
        self.endpoint = endpoint
        self.tracker = tracker
        self._log_flushers = log_flushers
        #: ssl, https: the TLS settings new connections get (see :meth:`reload_tls`)
        self.tls = tls
        self._tls_reload_interval = tls_reload_interval

    def reload_tls(self) -> bool | None:
        """ssl, https: read the key, certificate, chain and CA files again. The listener that
        made them is not needed: a listener handed over to a new source instance (a daemon
        reload) calls this to take the files as they are now."""
        return None if self.tls is None else self.tls.reload()

    def start(self) -> Deferred[Listener]:
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))

        def listening(port: IListeningPort) -> Listener:
            self._port = port
            if self.tls is not None:
                self.tls.start_polling(self._tls_reload_interval)
            return self

        return self.endpoint.listen(self.tracker).addCallback(listening)

    def stop(self) -> Deferred[None]:
        if self.tls is not None:
            self.tls.stop_polling()
        waits: list[Deferred[Any]] = [self.tracker.close_all()]
        if self._port is not None:
            waits.insert(0, maybeDeferred(self._port.stopListening))
        d = gatherResults(waits, consumeErrors=True)
        return d.addBoth(self._stopped)

    # A reload: the socket and the connections go on in the next instance (syslogsrc.handover)

    def quiesce(self) -> None:
        """Accept and read no more, for good (the source is stopping): new connections wait
        in the kernel's backlog, data in the sockets, for whoever takes them over."""
        if self._port is not None:
            self._port.stopReading()  # type: ignore[attr-defined]
        self.tracker.quiesce()

    def hand_over(self) -> ListenerState:
        """Give the listening socket and every plain stream connection up to the next
        instance (call :meth:`quiesce` first). A connection that cannot be handed over (TLS:
        its session lives in this process's OpenSSL objects; HTTP; behind ``haproxy:``) gives
        its frames read and not posted and is closed by ``stop()`` as before."""
        from syslogsrc.protocols._tracking import _innermost

        state = ListenerState(self.name)
        if self.tls is not None:
            self.tls.stop_polling()
        port, self._port = self._port, None
        if port is not None:
            skt = port.socket  # type: ignore[attr-defined]
            port.stopReading()  # type: ignore[attr-defined]
            state.fd, state.family = os.dup(skt.fileno()), skt.family
            if self.spec.kind == "unix":
                state.path = self.spec.path
                state.lock, port.lockFile = getattr(port, "lockFile", None), None  # type: ignore[attr-defined]
            skt.close()  # our descriptor only: the socket lives on in the duplicate
        plain = self.tls is None and not self.spec.proxy
        for connection in list(self.tracker.protocols):
            inner = connection.wrappedProtocol
            if inner is None:
                continue
            if plain and connection.open and not connection.closing and hasattr(inner, "adopt"):
                origin = inner._origin
                decoder, pending = inner.hand_over()
                if origin is None:  # nothing read yet: the new protocol finds its own
                    origin = origin_of(connection, self.transport, self.stats, self.spec.format)
                fd, family = connection.detach_socket()
                state.connections.append(ConnectionState(fd, family, decoder, pending, origin))
                continue
            innermost = _innermost(inner)
            take = getattr(innermost, "take_pending", None)
            origin = getattr(innermost, "_origin", None)
            if take is not None and origin is not None:
                frames = take()
                if frames:
                    state.frames.append((frames, origin))
        return state

    def adopt(self, state: ListenerState) -> Deferred[Listener]:
        """Listen on the socket another instance handed over (its :meth:`hand_over`), and go
        on with its connections; ``state`` keeps what was not taken (its frames)."""
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))
        assert state.fd is not None
        # Twisted's endpoint closes the descriptor once adopted (on failure, state.close() does)
        endpoint: IStreamServerEndpoint = AdoptedStreamServerEndpoint(
            self.reactor, state.fd, state.family
        )
        if self.spec.proxy:
            endpoint = proxyEndpoint(endpoint)

        def listening(port: IListeningPort) -> Listener:
            state.fd = None
            state.path = None  # the socket file is the new port's now
            if state.lock is not None:
                port.lockFile, state.lock = state.lock, None  # type: ignore[attr-defined]
            self._port = port
            if self.tls is not None:
                self.tls.start_polling(self._tls_reload_interval)
            connections, state.connections = state.connections, []
            for connection in connections:
                self._adopt_connection(connection, state)
            return self

        return endpoint.listen(self.tracker).addCallback(listening)

    def _adopt_connection(self, connection: ConnectionState, state: ListenerState) -> None:
        origin = attrs.evolve(connection.origin, listener=self.stats)
        try:
            transport = self.reactor.adoptStreamConnection(
                connection.fd, connection.family, self.tracker
            )
        except Exception:
            transport = None
            _log.failure("{listener}: cannot take over a connection", listener=self.name)
        finally:
            connection.close()
        protocol = getattr(transport, "protocol", None)
        inner = getattr(protocol, "wrappedProtocol", None)
        if inner is None or not hasattr(inner, "adopt"):
            # refused (max-connections, allow list): its frames are posted all the same
            if connection.pending:
                state.frames.append((connection.pending, origin))
            return
        self.stats.taken_over += len(connection.pending)
        inner.adopt(connection.decoder, connection.pending, origin)

    def _stopped(self, result: Any) -> Any:
        for flush in self._log_flushers:
            flush()
        self.tracker.flush_logs()
        return None if isinstance(result, list) else result


class DatagramListener(Listener):
    """udp, udp6, unixgram."""

    def __init__(
        self,
        spec: ListenSpec,
        reactor: Any,
        stats: ListenerStats,
        protocol: SyslogDatagramProtocol,
    ) -> None:
        super().__init__(spec, reactor, stats)
        self.protocol = protocol
        self.access: ListenerAccess | None = None  #: allow list and rate limit, if any

    def start(self) -> Deferred[Listener]:
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))
        spec, protocol = self.spec, self.protocol
        try:
            if spec.kind == "unixgram":
                assert spec.path is not None
                _remove_stale_socket(spec.path)
                port = self.reactor.listenUNIXDatagram(
                    spec.path, protocol, maxPacketSize=protocol.maxPacketSize, mode=spec.mode
                )
            elif spec.reuseport:
                port = _ReusePortUDP(
                    spec.port, protocol, spec.interface, protocol.maxPacketSize, self.reactor
                )
                port.startListening()
            else:
                port = self.reactor.listenUDP(
                    spec.port,
                    protocol,
                    interface=spec.interface,
                    maxPacketSize=protocol.maxPacketSize,
                )
        except Exception:
            return fail()
        self._port = port
        if protocol.paused:
            # The sink paused us while the port was starting; the port then started reading.
            port.stopReading()
        return succeed(self)

    def quiesce(self) -> None:
        """Read no more, for good (the source is stopping); the kernel keeps what arrives."""
        self.protocol.quiesce()

    def hand_over(self) -> ListenerState:
        """Give the socket up to the next instance with the datagrams read and not posted.
        unixgram sockets are not handed over (Twisted adopts only IP datagram sockets): they
        give their datagrams and are closed by ``stop()``, and the next instance binds anew."""
        state = ListenerState(self.name)
        if self.spec.kind == "unixgram" or self._port is None:
            self.protocol.quiesce()
            state.frames.extend(self.protocol.take_pending())
            return state
        port, self._port = self._port, None
        state.frames.extend(self.protocol.hand_over())
        skt = port.socket  # type: ignore[attr-defined]
        state.fd, state.family = os.dup(skt.fileno()), skt.family
        skt.close()  # our descriptor only
        self.protocol.flush_logs()
        if self.access is not None:
            self.access.flush_logs()
        return state

    def adopt(self, state: ListenerState) -> Deferred[Listener]:
        """Read the socket another instance handed over (its :meth:`hand_over`)."""
        if self._port is not None:
            return fail(RuntimeError(f"{self.name}: already started"))
        assert state.fd is not None
        protocol = self.protocol
        try:
            port = self.reactor.adoptDatagramPort(
                state.fd, state.family, protocol, protocol.maxPacketSize
            )
        except Exception:
            return fail()
        finally:
            os.close(state.fd)
            state.fd = None
        self._port = port
        if protocol.paused:
            port.stopReading()
        return succeed(self)

    def stop(self) -> Deferred[None]:
        port = self._port
        if port is None:
            return succeed(None)
        self.protocol.update_kernel_drops()  # the last reading, while the socket is open
        d = maybeDeferred(port.stopListening)

        def stopped(result: Any) -> Any:
            if self.spec.kind == "unixgram":
                assert self.spec.path is not None
                _remove_stale_socket(self.spec.path)
            self.protocol.flush_logs()
            if self.access is not None:
                self.access.flush_logs()
            return result

        return d.addBoth(stopped)


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file left at ``path`` (syslog-ng's unix-dgram does the same); anything
    else at ``path`` is left for bind() to complain about."""
    if path.startswith("\0"):  # Linux abstract namespace: no file
        return
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


# --- Building listeners: one builder per transport family -----------------------------------


def make_listener(
    spec: ListenSpec, reactor: Any, sink: IMessageSink, options: ListenerOptions
) -> Listener:
    """The listener for ``spec``, not started yet. TLS files are read now: a bad one raises
    :class:`~syslogsrc.options.OptionError`."""
    stats = ListenerStats(name=spec.text)
    if spec.framing is not None:
        options = attrs.evolve(options, framing=spec.framing)
    http = spec.kind in ("http", "https")
    what = "datagram" if not spec.stream else "request" if http else "connection"
    access = _access(spec, reactor, options, stats, what)
    if not spec.stream:
        protocol = SyslogDatagramProtocol(
            reactor, sink, options, stats, spec.transport, format=spec.format
        )
        protocol.access = access  # asked first thing for each datagram
        listener = DatagramListener(spec, reactor, stats, protocol)
        listener.access = access
        return listener

    flushers: list[Callable[[], None]] = []
    if access is not None:
        flushers.append(access.flush_logs)
    factory: IProtocolFactory
    if http:
        # Imported here: the HTTP protocol is optional (and twisted.web is big).
        from syslogsrc.protocols.http import HTTPIngestSite

        factory = HTTPIngestSite(
            reactor, sink, options, stats, transport=spec.transport, access=access
        )
    else:
        stream = SyslogStreamFactory(
            reactor, sink, options, stats, spec.transport, format=spec.format
        )
        flushers.append(stream.flush_logs)
        factory = stream
    tls = None
    if spec.kind in ("ssl", "https"):
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
    # HTTP answers a sender outside the allow list (403) or over its rate (429) itself.
    tracker = ConnectionTracker(
        reactor, factory, options, stats, access=None if http else access, proxied=spec.proxy
    )
    endpoint = _stream_endpoint(spec, reactor)
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


def _stream_endpoint(spec: ListenSpec, reactor: Any) -> IStreamServerEndpoint:
    if spec.kind == "unix":
        assert spec.path is not None
        return UNIXServerEndpoint(reactor, spec.path, spec.backlog, spec.mode, spec.lockfile)
    if spec.kind == "systemd":
        return _systemd_endpoint(spec, reactor)
    assert spec.port is not None
    if spec.reuseport:
        return _ReusePortTCPEndpoint(reactor, spec.port, spec.backlog, spec.interface)
    if spec.kind == "tcp6":
        return TCP6ServerEndpoint(reactor, spec.port, spec.backlog, spec.interface)
    # tcp, ssl, http, https: Twisted binds an IPv6 socket when the interface is an IPv6 address.
    return TCP4ServerEndpoint(reactor, spec.port, spec.backlog, spec.interface)


def _systemd_endpoint(spec: ListenSpec, reactor: Any) -> IStreamServerEndpoint:
    fds = ListenFDs.fromEnvironment()
    try:
        if spec.index is not None:
            fileno = fds.inheritedDescriptors()[spec.index]
        else:
            assert spec.fd_name is not None
            fileno = fds.inheritedNamedDescriptors()[spec.fd_name]
    except (IndexError, KeyError):
        raise OptionError(
            "listen", spec.text, "no such socket inherited from systemd (LISTEN_FDS)"
        ) from None
    family = getattr(socket, "AF_" + (spec.domain or "INET"))
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


# --- SO_REUSEPORT ------------------------------------------------------------------------------
#
# Twisted's ports do not set SO_REUSEPORT; these set it on the socket before bind(), which is
# all the difference. Several processes (or listeners) with reuseport=yes then share one port,
# and the kernel spreads connections (TCP) and datagrams (UDP, by the sender's address) over
# them. Linux requires every socket on the port to set it, and to belong to the same user.


def _set_reuseport(skt: socket.socket) -> socket.socket:
    skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return skt


class _ReusePortTCPPort(tcp.Port):
    def createInternetSocket(self) -> socket.socket:
        return _set_reuseport(super().createInternetSocket())


class _ReusePortUDP(udp.Port):
    def createInternetSocket(self) -> socket.socket:
        return _set_reuseport(super().createInternetSocket())


@implementer(IStreamServerEndpoint)
class _ReusePortTCPEndpoint:
    """``TCP4ServerEndpoint`` / ``TCP6ServerEndpoint`` with SO_REUSEPORT (the address family
    follows the interface, as in Twisted's own TCP port)."""

    def __init__(self, reactor: Any, port: int, backlog: int, interface: str) -> None:
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        def start() -> IListeningPort:
            port = _ReusePortTCPPort(
                self._port, protocolFactory, self._backlog, self._interface, self._reactor
            )
            port.startListening()
            return port

        return execute(start)
