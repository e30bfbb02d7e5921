"""Listener options: one validated value object shared by every protocol factory.

Each field's default, type and limits are declared once, in :mod:`syslogsrc.optiontable`;
every error names the option the user wrote (the syslog-ng spelling with dashes, since that
is what appears in their configuration).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from syslogsrc.framing import FRAMINGS
from syslogsrc.optiontable import PEER_VERIFY, OptionError, option

__all__ = ["FRAMINGS", "PEER_VERIFY", "ListenerOptions", "OptionError"]


def _name(attribute: attrs.Attribute) -> str:
    return attribute.name.replace("_", "-")


def _declared(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """The choices and limits :mod:`syslogsrc.optiontable` declares for this field."""
    option(attribute.name).check(value)


def _default(name: str) -> Any:
    return option(name).default


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
    """How every listener of a source behaves: what each option means, its default and its
    limits are in :mod:`syslogsrc.optiontable` (and the table of docs/listeners.md)."""

    framing: str = attrs.field(default=_default("framing"), validator=_declared)
    max_message_size: int = attrs.field(default=_default("max-message-size"), validator=_declared)
    max_connections: int = attrs.field(default=_default("max-connections"), validator=_declared)
    idle_timeout: float = attrs.field(default=_default("idle-timeout"), validator=_declared)
    tls_key_file: str | None = attrs.field(
        default=_default("tls-key-file"), validator=_optional_str
    )
    tls_cert_file: str | None = attrs.field(
        default=_default("tls-cert-file"), validator=_optional_str
    )
    tls_ca_file: str | None = attrs.field(default=_default("tls-ca-file"), validator=_optional_str)
    #: None: required when a CA file is given, else none (see :attr:`peer_verify`)
    tls_peer_verify: str | None = attrs.field(default=_default("tls-peer-verify"))
    tls_reload_interval: float = attrs.field(
        default=_default("tls-reload-interval"), validator=_declared
    )
    so_rcvbuf: int = attrs.field(default=_default("so-rcvbuf"), validator=_declared)
    udp_split_lines: bool = _default("udp-split-lines")
    http_path: str = attrs.field(default=_default("http-path"))
    http_token: str | None = attrs.field(default=_default("http-token"), validator=_optional_str)
    http_max_body: int = attrs.field(default=_default("http-max-body"), validator=_declared)
    http_headers: tuple[str, ...] = attrs.field(default=_default("http-headers"), converter=tuple)
    http_ack: bool = _default("http-ack")
    http_ack_timeout: float = attrs.field(default=_default("http-ack-timeout"), validator=_declared)
    relp_window: int = attrs.field(default=_default("relp-window"), validator=_declared)
    allow: tuple[str, ...] = attrs.field(default=_default("allow"), converter=_allow)
    rate: float | None = attrs.field(default=_default("rate"), validator=_optional_positive)
    burst: int | None = attrs.field(default=_default("burst"), validator=_optional_burst)

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
