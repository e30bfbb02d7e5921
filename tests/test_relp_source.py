"""RELP through SyslogSource, hosted the way syslog-ng runs it (SourceHost, the emulation): a
RELP frame is answered only once the destination has the message (the ack tracker and the
bookmarks of syslogsrc._acks), every other listener of the source keeps working beside it
(its messages carry the bookmark nobody waits for), and the testing module's RelpClient
speaks as omrelp does."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from syslogsrc import emulation
from syslogsrc.emulation import LogMessage
from syslogsrc.source import SyslogSource
from syslogsrc.testing import RelpClient, SourceHost, accepts, free_port, wait_until


class GatedOutput:
    """A destination that writes only when the test opens the gate: until then nothing is
    acknowledged, so nothing may be answered."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.messages: list[bytes] = []

    def write(self, msg: LogMessage) -> None:
        self.gate.wait(30)
        self.messages.append(msg["MESSAGE"])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _opened_at_the_end(output: GatedOutput) -> Iterator[None]:
    """Open the gate whatever happens, so that a failing test does not leave the host's
    consumer waiting before its stop."""
    try:
        yield
    finally:
        output.gate.set()


def test_relp_source_sets_a_batched_ack_tracker() -> None:
    source = SyslogSource()
    port = free_port()
    assert source.init({"listen": f"relp:{port}:interface=127.0.0.1"})
    assert isinstance(source.ack_tracker, emulation.BatchedAckTracker)
    plain = SyslogSource()
    assert plain.init({"listen": f"tcp:{port}:interface=127.0.0.1"})
    assert getattr(plain, "ack_tracker", None) is None


@pytest.mark.parametrize("with_http", [False, True])
def test_a_relp_frame_is_answered_once_the_destination_has_it(with_http: bool) -> None:
    relp, tcp = free_port(), free_port()
    listen = f"relp:{relp}:interface=127.0.0.1 tcp:{tcp}:interface=127.0.0.1"
    output = GatedOutput()
    options = {"listen": listen, "parser": "syslogsrc"}
    if with_http:
        options["listen"] += f" http:{free_port()}:interface=127.0.0.1"
        options["http-ack"] = "yes"
    with SourceHost(SyslogSource, options, output=output), _opened_at_the_end(output):
        assert wait_until(lambda: accepts(relp) and accepts(tcp))
        with RelpClient(relp) as client:
            txnrs = [client.send(b"<13>1 - h app - - - relp %d" % i) for i in range(20)]
            with pytest.raises(TimeoutError):
                client.timeout = 0.5
                client.wait(txnrs[:1])
            assert not set(txnrs) & set(client.answers)  # posted, not stored: not answered
            # a plain TCP sender beside it: its messages carry the untracked bookmark
            with socket.create_connection(("127.0.0.1", tcp)) as s:
                s.sendall(b"<13>1 - h app - - - tcp 0\n")
            output.gate.set()
            client.timeout = 15
            assert client.wait(txnrs) == {t: (200, "OK") for t in txnrs}
        assert wait_until(lambda: len(output.messages) == 21)
    assert sorted(output.messages) == sorted([b"relp %d" % i for i in range(20)] + [b"tcp 0"])


def test_a_relp_message_that_cannot_be_built_is_answered_500() -> None:
    class Picky(SyslogSource):
        def builder(self, origin: Any) -> Any:
            build = super().builder(origin)

            def picky(message: Any) -> Any:
                if b"poison" in message:
                    raise ValueError("cannot build this one")
                return build(message)

            return picky

    relp = free_port()
    output = GatedOutput()
    output.gate.set()
    with SourceHost(Picky, {"listen": f"relp:{relp}:interface=127.0.0.1"}, output=output):
        assert wait_until(lambda: accepts(relp))
        with RelpClient(relp) as client:
            good = client.send(b"<13>1 - h app - - - good")
            bad = client.send(b"<13>1 - h app - - - poison")
            answers = client.wait([good, bad])
    assert answers[good] == (200, "OK")
    assert answers[bad][0] == 500
    assert output.messages == [b"good"]


def test_the_relp_window_is_an_option(caplog: pytest.LogCaptureFixture) -> None:
    from twisted.internet.task import Clock

    from syslogsrc.interfaces import ListenerStats
    from syslogsrc.options import ListenerOptions
    from syslogsrc.protocols.relp import RelpFactory
    from syslogsrc.testing import AcknowledgingSink

    port = free_port()
    source = SyslogSource()
    assert source.init({"listen": f"relp:{port}", "relp-window": "4"})
    assert source.options.listener.relp_window == 4
    refused = SyslogSource()
    assert not refused.init({"listen": f"relp:{port}", "relp-window": "0"})
    assert "relp-window" in caplog.text
    factory = RelpFactory(
        Clock(), AcknowledgingSink(), ListenerOptions(relp_window=4), ListenerStats("r")
    )
    assert factory.max_window == 4
    assert factory.buildProtocol(None).connection.max_window == 4
