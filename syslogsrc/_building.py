"""How :class:`~syslogsrc.source.TwistedSource` turns one message into a ``LogMessage``.

:class:`MessageBuilding` is the part of ``TwistedSource`` that builds: a raw frame kept whole,
a parsed message's stamp, pairs, PRI and tags, and what every message carries of its origin
(:meth:`MessageBuilding.annotate`). Each version's means of saying it (``set_transport_name``,
``set_source_ipaddress``, ``set_recvd_rawmsg_size``) is decided once, here as
module constants and at ``attach()`` as the source's attributes, never per message.
:class:`~syslogsrc.source.SyslogSource` adds faster builders for the daemon's own parser
(:mod:`syslogsrc._daemon_builders`).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from syslogsrc._daemon_time import stamp_carrier, stamp_for_daemon
from syslogsrc._logmsg import TAGS_PAIR, sdata_last_first, value_of
from syslogsrc.interfaces import Origin
from syslogsrc.parsing import ParsedMessage, malformed
from syslogsrc.runtime import FEATURES, LogMessage

__all__ = ["MessageBuilding"]

_ZERO = dt.timedelta(0)
_IN_DAEMON = FEATURES.in_daemon
_RAWMSG_SIZE = FEATURES.set_recvd_rawmsg_size


class MessageBuilding:
    """The message-building methods of :class:`~syslogsrc.source.TwistedSource` (a mixin: the
    attributes it reads, ``source_ip``, ``_transport_pair``, ``_set_source_ip`` and
    ``_msgformat_pair``, are the source's, set in its ``__init__`` and at ``attach()``)."""

    source_ip: str
    _transport_pair: bool
    _set_source_ip: bool
    _msgformat_pair: bool

    def builder(self, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
        """What builds the ``LogMessage`` of each message from ``origin``: :meth:`build_message`
        with the origin bound. Asked once per origin (a connection, a datagram's sender, an
        HTTP request; kept in ``origin.memo``), after :meth:`attach`, and again every
        :attr:`builder_ttl` seconds when that is set (a builder that depends on the date). A
        subclass may return something faster for the origin (:class:`SyslogSource` does, for
        the daemon's parser)."""
        return functools.partial(self.build_message, origin=origin)

    def build_message(self, message: bytes | ParsedMessage, origin: Origin) -> Any:
        """Turn one message into a ``LogMessage``. The default keeps a raw frame whole as
        MESSAGE, and takes a parsed message's pairs as they are; :class:`SyslogSource` parses
        frames. ``origin.format`` is the listener's format, ``origin.pairs`` what every
        message of the origin carries (:meth:`annotate` adds them)."""
        if type(message) is not bytes:
            return self.message_from(message, origin, len(message.pairs.get("MESSAGE", "")))
        msg = LogMessage(message)
        self.annotate(msg, origin, len(message))
        return msg

    def message_from(self, parsed: ParsedMessage, origin: Origin, size: int) -> Any:
        """A ``LogMessage`` of a parsed message: its stamp (or now), pairs, PRI and tags, then
        :meth:`annotate`. ``size`` is the frame's size (``$RAWMSG_SIZE`` where the daemon has
        it)."""
        msg = self._parsed_message(parsed)
        if parsed.tags and malformed(parsed):
            origin.stats.malformed += 1
        self.annotate(msg, origin, size)
        return msg

    def _parsed_message(self, parsed: ParsedMessage) -> Any:
        """:meth:`message_from` without what the origin adds (for the hybrid's probes)."""
        if parsed.timestamp is not None:
            msg = self._message_at(parsed.timestamp, parsed.format)
        else:
            msg = LogMessage()
        pairs = sdata_last_first(parsed.pairs) if _IN_DAEMON else parsed.pairs.items()
        for name, value in pairs:
            msg[name] = value
        msg.set_pri(parsed.pri)
        if parsed.tags:
            msg[TAGS_PAIR] = ",".join(parsed.tags)
        if self._msgformat_pair:  # as the daemon's parser names it (4.7+)
            msg["MSGFORMAT"] = parsed.format
        return msg

    def _message_at(self, ts: dt.datetime, format: str) -> Any:
        """A new ``LogMessage`` stamped ``ts`` (instant and offset)."""
        offset = ts.utcoffset()
        if offset is not None and offset < _ZERO:
            parse_options = getattr(self, "parse_options", None)
            if parse_options is not None:
                msg = LogMessage.parse(stamp_carrier(ts), parse_options)
                # flags(no-parse) or another format() would leave the header in MESSAGE
                if not value_of(msg, "MESSAGE"):
                    if value_of(msg, "MSGFORMAT"):  # 4.7+ names the carrier's format
                        msg["MSGFORMAT"] = format
                    return msg
        msg = LogMessage()
        msg.set_timestamp(stamp_for_daemon(ts))
        return msg

    def annotate(self, msg: Any, origin: Origin, size: int) -> None:
        """What every message carries of its origin, by each version's means (decided once):
        the origin's pairs, ``TRANSPORT`` unless ``set_transport_name()`` gives it, the
        sender's address, the frame's size where the daemon keeps it."""
        pairs = origin.pairs
        if pairs:
            for name, value in pairs.items():
                msg[name] = value
        if self._transport_pair:
            msg["TRANSPORT"] = origin.transport
        host = origin.peer_host
        if host is not None and self.source_ip != "none":
            if self._set_source_ip:
                msg.set_source_ipaddress(host, origin.peer_port or 0)
            else:  # 3.x has no API; 4.x's leaks (source-ip saddr asks for it all the same)
                msg["PEERIP"] = host
                msg["PEERPORT"] = str(origin.peer_port or 0)
        if _RAWMSG_SIZE:
            msg.set_recvd_rawmsg_size(size)
