"""What the first bytes of a connection say about its client, before any protocol reads them.

A plain listener (``tcp:``, ``http:``) whose connection begins with a TLS handshake record has a
client that should have used ``ssl:``/``https:``: it closes the connection at once, rather than
post the binary ClientHello as junk lines (stream) or wait for a line end that never comes (HTTP).
"""

from __future__ import annotations

__all__ = ["TLS_CLIENT_HELLO", "looks_like_tls"]

#: How a TLS ClientHello starts (RFC 8446 5.1): a record of ContentType handshake (22), then
#: legacy_record_version 3.x. No syslog message and no HTTP request starts with these bytes.
TLS_CLIENT_HELLO = b"\x16\x03"


def looks_like_tls(data: bytes) -> bool:
    """True when ``data``, the first bytes of a connection, start a TLS handshake."""
    return data[:2] == TLS_CLIENT_HELLO
