"""What a test of a source, a protocol or a sink needs: public, documented, stable.

For people who write their own sources or embed the factories, and for syslogsrc's own tests:

* :class:`RecordingSink` — an :class:`~syslogsrc.interfaces.IMessageSink` that records what
  protocols hand it, one batch per call, and can play the daemon's flow control (a window
  that pauses every producer from inside ``post``, as syslog-ng's ``suspend()`` arrives);
* :class:`AcknowledgingSink` — a :class:`RecordingSink` that also says when each message is
  stored (:class:`~syslogsrc.interfaces.IAcknowledgingSink`), at once or when the test says so,
  in any order: what a protocol that answers its sender (RELP) is tested with;
* :func:`connect` — a stream factory's protocol on a fake transport
  (:class:`twisted.internet.testing.StringTransport`), peer and local address chosen;
* :func:`free_port`, :func:`accepts`, :func:`wait_until`, :func:`has_ipv6` — for tests on real
  loopback sockets;
* :class:`~syslogsrc.host.SourceHost` (re-exported) — runs any ``LogSource`` class the way
  syslog-ng does (``init()``, ``run()`` in its own thread, ``request_exit()``, ``deinit()``),
  on the emulation of the ``syslogng`` module;
* :class:`ListeningSource` — a source class run by ``SourceHost`` on loopback listeners,
  with a :class:`CountingOutput` (which can stall, as a slow destination does) and the
  records of the daemon's log (:class:`LogRecords`): for tests under load or hostile input;
* :class:`GoodSender`, :class:`GoodHTTPSender` — well-behaved senders that run alongside a
  test's traffic and check that every one of their messages arrived, in order, once;
* :func:`http_post`, :func:`parse_responses`, :func:`closed_by_peer`, :func:`tls_connect`,
  :func:`peak_rss`, :data:`HOSTILE_BYTES` — the client side of such tests.

A test of a source with a listener, in full::

    from syslogsrc.testing import SourceHost, free_port, wait_until
    import socket

    port = free_port()
    with SourceHost(MySource, {"listen": f"tcp:{port}:interface=127.0.0.1"}) as host:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>1 - h app - - - hello\\n")
        assert wait_until(lambda: len(host.messages) == 1)
    assert host.messages[0]["MESSAGE"] == b"hello"
"""

from __future__ import annotations

from syslogsrc.host import SourceHost
from syslogsrc.testing._clients import HTTPResponse, RelpClient, http_post, parse_responses
from syslogsrc.testing._harness import (
    HOSTILE_BYTES,
    CountingOutput,
    GoodHTTPSender,
    GoodSender,
    ListeningSource,
    LogRecords,
    PeakRSS,
    peak_rss,
)
from syslogsrc.testing._sinks import AcknowledgingSink, RecordingSink, connect
from syslogsrc.testing._sockets import (
    WAIT,
    accepts,
    closed_by_peer,
    free_port,
    has_ipv6,
    tls_connect,
    wait_until,
)

__all__ = [
    "HOSTILE_BYTES",
    "WAIT",
    "AcknowledgingSink",
    "CountingOutput",
    "GoodHTTPSender",
    "GoodSender",
    "HTTPResponse",
    "ListeningSource",
    "LogRecords",
    "PeakRSS",
    "RecordingSink",
    "RelpClient",
    "SourceHost",
    "accepts",
    "closed_by_peer",
    "connect",
    "free_port",
    "has_ipv6",
    "http_post",
    "parse_responses",
    "peak_rss",
    "tls_connect",
    "wait_until",
]
