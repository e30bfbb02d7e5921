"""Listener options: one validated value object shared by every protocol factory.

Validation lives here, in one place, and every error names the option the user wrote (the
syslog-ng spelling with dashes, since that is what appears in their configuration).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from syslogsrc.framing import FRAMINGS

__all__ = ["FRAMINGS", "PEER_VERIFY", "ListenerOptions", "OptionError"]

PEER_VERIFY = ("none", "optional", "required")


class OptionError(ValueError):
    """A bad option value. ``str()`` names the option and the value."""

    def __init__(self, option: str, value: object, why: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"option {option}({value!r}): {why}")


def _name(attribute: attrs.Attribute) -> str:
    return attribute.name.replace("_", "-")


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise OptionError(_name(attribute), value, f"must be one of {', '.join(choices)}")

    return check


def _at_least(low: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
            raise OptionError(_name(attribute), value, f"must be a number >= {low}")

    return check


def _allow(value: Any) -> tuple[str, ...]:
    """The ``allow`` option: networks as a text (commas or whitespace between) or a sequence;
    empty: everyone."""
    from syslogsrc.access import parse_allow  # here: access imports this module

    if value is None or value == "" or value == ():
        return ()
    try:
        return parse_allow(value)
    except ValueError as e:
        raise OptionError("allow", value, str(e)) from None


def _optional_positive(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise OptionError(_name(attribute), value, "must be a number > 0")
    if not math.isfinite(value):
        raise OptionError(_name(attribute), value, "must be a finite number")


def _optional_burst(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(_name(attribute), value, "must be a whole number >= 1")


def _optional_str(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionError(_name(attribute), value, "must be a non-empty string")


@attrs.frozen(kw_only=True)
class ListenerOptions:
    """How every listener of a source behaves. Defaults are what a syslog-ng user expects."""

    #: RFC 6587 framing of stream transports: auto (digit first → octet-counting, else LF).
    framing: str = attrs.field(default="auto", validator=_one_of(FRAMINGS))
    #: longer messages are truncated to this many bytes and counted (syslog-ng: log-msg-size).
    max_message_size: int = attrs.field(default=65536, validator=_at_least(64))
    #: stream connections open at once per listener; further ones are refused, logged and counted.
    max_connections: int = attrs.field(default=100, validator=_at_least(1))
    #: seconds without data after which a stream connection is closed; 0 = never.
    idle_timeout: float = attrs.field(default=0, validator=_at_least(0))
    #: TLS: server key and certificate (PEM) for ssl:/https: listeners without their own.
    tls_key_file: str | None = attrs.field(default=None, validator=_optional_str)
    tls_cert_file: str | None = attrs.field(default=None, validator=_optional_str)
    #: TLS: CA bundle (PEM) that client certificates must chain to.
    tls_ca_file: str | None = attrs.field(default=None, validator=_optional_str)
    #: TLS client certificates: none, optional (verified if sent) or required.
    #: Default: required when a CA file is given, else none.
    tls_peer_verify: str | None = attrs.field(default=None)
    #: TLS: seconds between looks at the key, certificate and CA files; a changed set is taken
    #: for new connections once it stood still for one interval. 0 = never (SIGHUP and the
    #: daemon's reload still re-read them).
    tls_reload_interval: float = attrs.field(default=0, validator=_at_least(0))
    #: SO_RCVBUF of datagram sockets, bytes. 4 MiB loses nothing of a 5k msg/s burst.
    so_rcvbuf: int = attrs.field(default=4 * 1024 * 1024, validator=_at_least(0))
    #: a datagram holding several LF-separated messages is split (else one message per datagram).
    udp_split_lines: bool = False
    #: HTTP: requests are accepted under this path prefix.
    http_path: str = attrs.field(default="/")
    #: HTTP: bearer token required from clients (401 without it); None = no auth.
    http_token: str | None = attrs.field(default=None, validator=_optional_str)
    #: HTTP: largest accepted body after decompression, bytes (413 past it).
    http_max_body: int = attrs.field(default=16 * 1024 * 1024, validator=_at_least(1))
    #: HTTP: request headers copied into name-value pairs (http.header.<name>).
    http_headers: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: senders allowed, as IPv4/IPv6 networks or addresses (``10.0.0.0/8,::1``); the default
    #: of listeners with an address (not unix sockets) that have no ``allow=``. Empty: everyone.
    allow: tuple[str, ...] = attrs.field(default=(), converter=_allow)
    #: messages per second per sender (token bucket), the default of listeners with an address
    #: that have no ``rate=``; None: no limit.
    rate: float | None = attrs.field(default=None, validator=_optional_positive)
    #: messages a sender may send at once beyond its rate; None: a second's worth (ceil(rate)).
    burst: int | None = attrs.field(default=None, validator=_optional_burst)

    def __attrs_post_init__(self) -> None:
        if self.tls_peer_verify is not None and self.tls_peer_verify not in PEER_VERIFY:
            raise OptionError(
                "tls-peer-verify", self.tls_peer_verify, f"must be one of {', '.join(PEER_VERIFY)}"
            )
        if self.tls_peer_verify in ("optional", "required") and not self.tls_ca_file:
            raise OptionError(
                "tls-peer-verify", self.tls_peer_verify, "needs tls-ca-file to verify against"
            )
        if not self.http_path.startswith("/"):
            raise OptionError("http-path", self.http_path, "must start with /")

    @property
    def peer_verify(self) -> str:
        """The effective client-certificate policy."""
        if self.tls_peer_verify is not None:
            return self.tls_peer_verify
        return "required" if self.tls_ca_file else "none"
