"""The parsed form of a listener spec and the checks of its arguments (behind
:mod:`syslogsrc.listen`, which holds the table of kinds and re-exports what is public here).

A spec is cut into arguments by Twisted's own endpoint-string grammar
(:func:`twisted.internet.endpoints._parse`, the function :func:`serverFromString` uses), so a
spec means here exactly what it means to Twisted; each kind's parser below then turns those
string arguments into :class:`ListenSpec` fields, with an error that names the bad argument.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from typing import Any

import attrs
from twisted.internet import endpoints as _twisted_endpoints

from syslogsrc.access import parse_allow
from syslogsrc.options import FRAMINGS
from syslogsrc.parsing import FORMATS

#: ListenSpec fields, as a kind's parser returns them.
Fields = dict[str, Any]


@attrs.frozen
class ListenSpec:
    """One parsed, validated listener spec. Fields a kind does not use keep their defaults."""

    text: str  #: the spec as written: the listener's name
    kind: str  #: a key of :data:`syslogsrc.listen.KINDS`
    #: "tcp", "tls", "unix", "udp", "unixgram", "http", "https", or a newer kind's
    transport: str
    proxy: bool = False  #: haproxy: wrapper: each connection starts with a PROXY v1/v2 header
    port: int | None = None  #: 0 = any free port (see ``Listener.address``)
    path: str | None = None  #: unix and unixgram socket path (None for every other kind)
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
        """True for connection-oriented kinds (tracked connections), as the kind's table entry
        says (:data:`syslogsrc.listen.LISTENER_KINDS`)."""
        from syslogsrc.listen import LISTENER_KINDS, StreamStart

        return isinstance(LISTENER_KINDS[self.kind].start, StreamStart)

    @property
    def addressed(self) -> bool:
        """True when senders have an IP address: not unix sockets, unless behind haproxy:
        (the PROXY header gives one)."""
        return self.proxy or self.transport not in ("unix", "unixgram")


class SpecError(Exception):
    """Raised by a kind's parser; :func:`syslogsrc.listen.parse_spec` turns it into
    ``OptionError("listen", spec, why)``."""


# --- The grammar: Twisted's endpoint description syntax ----------------------------------------
#
#   listen   = *WSP spec *( 1*WSP spec ) *WSP
#   spec     = field *( ":" field )            ; kind first, then positional and name=value
#   field    = value / ( value "=" value )
#   value    = *( char / "\" any-char )         ; "\" makes the next character literal
#
# Twisted has no list of specs: split_specs cuts the option at unescaped whitespace and leaves
# the escapes in place for Twisted's tokenizer.


def split_specs(text: str) -> Iterator[str]:
    """Cut a listen option at unescaped whitespace; escapes are left for :func:`arguments`."""
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


def arguments(text: str) -> tuple[list[str], dict[str, str]]:
    """``"a:b:d=1:c"`` -> ``(["a", "b", "c"], {"d": "1"})``: the spec cut by Twisted's own
    tokenizer, the one :func:`~twisted.internet.endpoints.serverFromString` applies before it
    dispatches to a kind's parser. Twisted offers no public route to it for a description that
    is not a stream endpoint (udp:, unixgram:, http: with our settings), so this is the one
    place that calls the private function rather than a copy of it that could drift."""
    if _ends_in_lone_backslash(text):
        # Twisted's tokenizer fails with a RuntimeError there; say what is wrong instead.
        raise SpecError("a \\ at the end escapes nothing: write \\\\ for a backslash")
    args, kwargs = _twisted_endpoints._parse(text)
    return list(args), dict(kwargs)


def _ends_in_lone_backslash(text: str) -> bool:
    trailing = len(text) - len(text.rstrip("\\"))
    return trailing % 2 == 1


# --- Value checks ---------------------------------------------------------------------------


def check_port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise SpecError(f"bad port {value!r}: must be 0 to 65535")
    return int(value)


def check_interface(value: str, *, ipv6_only: bool = False) -> str:
    if value == "":
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise SpecError(f"bad interface {value!r}: must be an IP address") from None
    if ipv6_only and address.version != 6:
        raise SpecError(f"bad interface {value!r}: must be an IPv6 address")
    return value


def check_positive(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise SpecError(f"bad {name} {value!r}: must be a whole number >= 1")
    return int(value)


def check_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise SpecError(f"bad mode {value!r}: must be octal, e.g. 660") from None
    if not 0 <= mode <= 0o7777:
        raise SpecError(f"bad mode {value!r}: must be octal, e.g. 660")
    return mode


def check_path(value: str) -> str:
    if not value:
        raise SpecError("the socket path is empty")
    return value


_YES = ("yes", "true", "1")
_NO = ("no", "false", "0")


def check_flag(name: str, value: str) -> bool:
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise SpecError(f"bad {name} {value!r}: must be yes or no")


def check_file(name: str, value: str | None) -> str | None:
    if value is not None and not value:
        raise SpecError(f"{name}= is empty")
    return value


# --- One parser per grammar: positional and keyword arguments as in the spec ------------------
#
# A kind's table entry names one of these (several kinds share one: http takes tcp's, https
# and ssl the same). The parameter names are the keywords of the spec, Twisted's camelCase
# included, in Twisted's positional order and with Twisted's defaults; the usage text in an
# error is made from the signature. Each returns ListenSpec fields.


def parse_tcp(port: str, interface: str = "", backlog: str = "50", reuseport: str = "no") -> Fields:
    """tcp: (an IPv6 interface binds an IPv6 socket)."""
    return {
        "port": check_port(port),
        "interface": check_interface(interface),
        "backlog": check_positive("backlog", backlog),
        "reuseport": check_flag("reuseport", reuseport),
    }


def parse_tcp6(
    port: str, interface: str = "::", backlog: str = "50", reuseport: str = "no"
) -> Fields:
    """tcp6: IPv6 addresses only, all of them by default."""
    return {
        "port": check_port(port),
        "interface": check_interface(interface, ipv6_only=True),
        "backlog": check_positive("backlog", backlog),
        "reuseport": check_flag("reuseport", reuseport),
    }


def parse_tcp_port(port: str, interface: str = "", backlog: str = "50") -> Fields:
    """A TCP port without ``reuseport=`` (http:, one HTTP site per port)."""
    return parse_tcp(port, interface, backlog)


def parse_tls(
    port: str,
    privateKey: str | None = None,
    certKey: str | None = None,
    interface: str = "",
    backlog: str = "50",
    extraCertChain: str | None = None,
    dhParameters: str | None = None,
) -> Fields:
    """ssl:, https: a TCP port and the TLS files (None: the tls-* options)."""
    return {
        "port": check_port(port),
        "interface": check_interface(interface),
        "backlog": check_positive("backlog", backlog),
        "private_key": check_file("privateKey", privateKey),
        "cert_key": check_file("certKey", certKey),
        "extra_cert_chain": check_file("extraCertChain", extraCertChain),
        "dh_parameters": check_file("dhParameters", dhParameters),
    }


def parse_unix(address: str, mode: str = "666", backlog: str = "50", lockfile: str = "1") -> Fields:
    """unix: a stream socket file."""
    if lockfile not in ("0", "1"):
        raise SpecError(f"bad lockfile {lockfile!r}: must be 0 or 1")
    return {
        "path": check_path(address),
        "mode": check_mode(mode),
        "backlog": check_positive("backlog", backlog),
        "lockfile": lockfile == "1",
    }


def parse_systemd(domain: str, index: str | None = None, name: str | None = None) -> Fields:
    """systemd: an inherited socket; its transport follows its domain."""
    if domain not in ("INET", "INET6", "UNIX"):
        raise SpecError(f"bad domain {domain!r}: must be INET, INET6 or UNIX")
    if (index is None) == (name is None):
        raise SpecError("give exactly one of index= and name=")
    if index is not None and not index.isdigit():
        raise SpecError(f"bad index {index!r}: must be a whole number >= 0")
    return {
        "domain": domain,
        "index": None if index is None else int(index),
        "fd_name": name,
        "transport": "unix" if domain == "UNIX" else "tcp",
    }


def parse_udp(port: str, interface: str = "", reuseport: str = "no") -> Fields:
    """udp: (an IPv6 interface binds an IPv6 socket)."""
    return {
        "port": check_port(port),
        "interface": check_interface(interface),
        "reuseport": check_flag("reuseport", reuseport),
    }


def parse_udp6(port: str, interface: str = "::", reuseport: str = "no") -> Fields:
    """udp6: IPv6 addresses only, all of them by default."""
    return {
        "port": check_port(port),
        "interface": check_interface(interface, ipv6_only=True),
        "reuseport": check_flag("reuseport", reuseport),
    }


def parse_unixgram(address: str, mode: str = "666") -> Fields:
    """unixgram: a datagram socket file."""
    return {"path": check_path(address), "mode": check_mode(mode)}


# --- Per-listener settings: the same for every kind they apply to ------------------------------

# Settings a kind may take beside its own arguments: framing=, format=, allow=, rate=, burst=,
# each the per-listener form of a source option (the option is the default). A kind's table
# entry says which of framing= and format= it takes; the access settings below apply to every
# kind whose senders have an address.
ACCESS_SETTINGS = ("allow", "rate", "burst")


def common_settings(kind: str, takes: frozenset[str], kwargs: dict[str, str]) -> Fields:
    """Take the per-listener settings out of ``kwargs`` and check them; ``takes`` is which of
    framing= and format= the kind accepts."""
    fields: Fields = {}
    framing = kwargs.pop("framing", None)
    if framing is not None:
        if "framing" not in takes:
            raise SpecError(f"framing= applies to stream kinds (tcp, ssl, unix, ...), not {kind}")
        if framing not in FRAMINGS:
            raise SpecError(f"bad framing {framing!r}: must be one of {', '.join(FRAMINGS)}")
        fields["framing"] = framing
    format = kwargs.pop("format", None)
    if format is not None:
        if "format" not in takes:
            raise SpecError(f"format= does not apply to {kind}: its protocol says the format")
        if format not in FORMATS:
            raise SpecError(f"bad format {format!r}: must be one of {', '.join(FORMATS)}")
        fields["format"] = format
    allow = kwargs.pop("allow", None)
    if allow is not None:
        try:
            fields["allow"] = parse_allow(allow)
        except ValueError as e:
            raise SpecError(f"bad allow= {allow!r}: {e}") from None
    rate = kwargs.pop("rate", None)
    if rate is not None:
        try:
            value = float(rate)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise SpecError(f"bad rate= {rate!r}: must be a number of messages per second > 0")
        fields["rate"] = value
    burst = kwargs.pop("burst", None)
    if burst is not None:
        if not burst.isdigit() or int(burst) < 1:
            raise SpecError(f"bad burst= {burst!r}: must be a whole number >= 1")
        fields["burst"] = int(burst)
    return fields
