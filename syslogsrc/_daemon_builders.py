"""The builders of :class:`~syslogsrc.source.SyslogSource` for the daemon's own parser: one
function per origin (a connection, a datagram's sender, an HTTP request) that turns a frame into
the ``LogMessage`` to post.

:func:`native_builder` (``parser native``) and :func:`hybrid_builder` (``parser hybrid``) are
:meth:`~syslogsrc.source.TwistedSource.build_message` and
:meth:`~syslogsrc.source.TwistedSource.annotate` in one closure: what depends on the origin, the
options and the daemon's version is read once when the builder is made, so that a message costs
one Python call and the calls into the daemon it needs. A builder must give the same message as
``build_message`` followed by ``annotate`` (tests/test_source.py holds them to it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syslogsrc.interfaces import Origin
from syslogsrc.parsing import ParsedMessage, _strip_trailer, parse
from syslogsrc.runtime import FEATURES, LogMessage

if TYPE_CHECKING:
    from syslogsrc._syslog_source import SyslogSource

__all__ = ["hybrid_builder", "is_utf8", "native_builder"]

_RAWMSG_SIZE = FEATURES.set_recvd_rawmsg_size
#: a datagram's last byte that is no part of its message
_TRAILERS = (b"\n", b"\0")
# (A byte is looked for by its number, ``0 in frame``: ``b"\0" in frame`` first tries its
# needle as an int, and raises and clears a TypeError, about 2 000 instructions each time.)


def native_builder(source: SyslogSource, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
    """:meth:`build_message` with the daemon's parser and :meth:`annotate` in one function
    made for ``origin``, with what depends on the origin and the version decided here:
    per message one Python call, and the calls into the daemon the message needs."""
    parse = LogMessage.parse
    parse_options = source.parse_options
    pairs = origin.pairs
    transport = origin.transport if source._transport_pair else None
    host = origin.peer_host if source.source_ip != "none" else None
    port = origin.peer_port or 0
    set_source_ip = source._set_source_ip and host is not None
    peer_pairs = not source._set_source_ip and host is not None
    port_text = str(port)
    message_from = source.message_from

    def build(frame: bytes | ParsedMessage) -> Any:
        if type(frame) is not bytes:
            return message_from(frame, origin, len(frame.pairs.get("MESSAGE", "")))
        msg = parse(frame, parse_options)
        if pairs:
            for name, value in pairs.items():
                msg[name] = value
        if transport is not None:
            msg["TRANSPORT"] = transport
        if set_source_ip:
            msg.set_source_ipaddress(host, port)
        elif peer_pairs:
            msg["PEERIP"] = host
            msg["PEERPORT"] = port_text
        if _RAWMSG_SIZE:
            msg.set_recvd_rawmsg_size(len(frame))
        return msg

    return build


def hybrid_builder(source: SyslogSource, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
    """The hybrid parser for one batch from ``origin``: the daemon's parser for a frame
    of a shape it reads as ours (:mod:`syslogsrc._daemon_parse`, one regex), ours for any
    other; then what :meth:`annotate` adds, decided here for the origin."""
    fmt = origin.format or source._format
    names = source._c_shapes.get(fmt, ())
    if not names:
        return functools.partial(source.build_message, origin=origin)
    read_alike = source._frame_test(names)
    header_of = source._header_test(names)
    # The header of the last frame whose header matched (_daemon_parse.header_test): a frame
    # that starts with it, or whose own header matches, is read alike when its rest is a body
    # (no NUL, no CR or LF at the end), checked by two bytes operations instead of a regex over
    # the body. One sender's headers stay the same for a second.
    known_header: bytes | tuple[()] = ()
    c_parse = LogMessage.parse
    parse_options = source.parse_options
    ours = parse
    time_zone = source._time_zone
    pairs = origin.pairs
    transport = origin.transport if source._transport_pair else None
    host = origin.peer_host
    port = origin.peer_port or 0
    set_source_ip = source._set_source_ip and host is not None
    peer_pairs = not source._set_source_ip and host is not None
    port_text = str(port)
    message_from = source.message_from

    def build(frame: bytes | ParsedMessage) -> Any:
        nonlocal known_header
        if type(frame) is not bytes:
            return message_from(frame, origin, len(frame.pairs.get("MESSAGE", "")))
        # A datagram's trailing LF (or NUL, CR LF) is no part of the message for either
        # parser (ours drops it first): the daemon's is given the frame without it.
        bare = _strip_trailer(frame) if frame[-1:] in _TRAILERS else frame
        if bare.startswith(known_header):
            alike = 0 not in bare and bare[-1] not in b"\r\n"
        else:
            header = header_of(bare)
            if header:
                known_header = bare[: header.end()]
                alike = 0 not in bare and bare[-1] not in b"\r\n"
            else:  # not of a shape, or an RFC 5424 frame without a message
                alike = read_alike(bare)
        if not (alike and (bare.isascii() or is_utf8(bare))):
            return message_from(ours(frame, fmt, time_zone=time_zone), origin, len(frame))
        msg = c_parse(bare, parse_options)
        if pairs:
            for name, value in pairs.items():
                msg[name] = value
        if transport is not None:
            msg["TRANSPORT"] = transport
        if set_source_ip:
            msg.set_source_ipaddress(host, port)
        elif peer_pairs:
            msg["PEERIP"] = host
            msg["PEERPORT"] = port_text
        if _RAWMSG_SIZE:
            msg.set_recvd_rawmsg_size(len(frame))
        return msg

    return build


_BOM = b"\xef\xbb\xbf"


def is_utf8(frame: bytes) -> bool:
    """Whether ``frame`` is UTF-8, for a frame that is not ASCII."""
    # RFC 5424's MSG-UTF8 starts with a BOM, often its only bytes past ASCII: without it the
    # rest is ASCII, no decode needed (which would build a str of 2-byte characters)
    if frame.replace(_BOM, b"", 1).isascii():
        return True
    try:
        frame.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
