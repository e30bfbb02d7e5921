"""syslogsrc.testing is public: what it promises, checked on the real protocols."""

from __future__ import annotations

import socket

import pytest

from syslogsrc import testing
from syslogsrc.interfaces import ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.protocols.stream import SyslogStreamFactory
from syslogsrc.source import SyslogSource


def _factory(sink: testing.RecordingSink) -> SyslogStreamFactory:
    from twisted.internet.task import Clock

    return SyslogStreamFactory(Clock(), sink, ListenerOptions(), ListenerStats("tcp:5514"))


def test_a_recording_sink_records_batches_and_pauses_at_its_window() -> None:
    sink = testing.RecordingSink(window=2)
    protocol, transport = testing.connect(_factory(sink), peer=("2001:db8::7", 1234))
    protocol.dataReceived(b"<13>1 - h p - - - a\n<13>1 - h p - - - b\n<13>1 - h p - - - c\n")
    assert sink.messages == [b"<13>1 - h p - - - a", b"<13>1 - h p - - - b"]
    assert len(sink.batches) == 1
    assert transport.producerState == "paused"
    assert sink.posts[0][1].peer_host == "2001:db8::7"
    sink.resume()  # what waited in the protocol goes first, as its own batch
    assert sink.batches[-1] == [b"<13>1 - h p - - - c"]
    assert sink.posted_while_paused == []
    assert [p.pairs["MESSAGE"] for p in sink.parsed()] == ["a", "b", "c"]


def test_a_recording_sink_can_fail() -> None:
    sink = testing.RecordingSink(raise_on=[b"<13>bad"])
    origin = Origin("tcp", ListenerStats("x"))
    assert sink.post([b"<13>good"], origin) == 1
    with pytest.raises(ValueError, match="refuses"):
        sink.post([b"<13>bad"], origin)
    assert sink.messages == [b"<13>good"]


def test_free_port_accepts_and_wait_until() -> None:
    port = testing.free_port()
    assert not testing.accepts(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert testing.accepts(port)
    assert testing.free_port("udp") > 0
    assert testing.wait_until(lambda: True, timeout=0.1)
    assert not testing.wait_until(lambda: False, timeout=0.1)


def test_the_module_docstring_example_runs() -> None:
    # the example a user copies: a source with a listener, a real socket, its messages
    port = testing.free_port()
    with testing.SourceHost(SyslogSource, {"listen": f"tcp:{port}:interface=127.0.0.1"}) as host:
        assert testing.wait_until(lambda: testing.accepts(port))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>1 - h app - - - hello\n")
        assert testing.wait_until(lambda: len(host.messages) == 1)
    assert host.messages[0]["MESSAGE"] == b"hello"
