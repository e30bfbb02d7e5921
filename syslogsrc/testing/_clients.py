"""The client side of HTTP and RELP tests (:mod:`syslogsrc.testing`)."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Sequence
from typing import Any

import attrs

from syslogsrc.testing._sockets import WAIT

# -- the client side ---------------------------------------------------------------------------


def http_post(
    port: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    path: str = "/",
    conn: Any = None,
) -> tuple[int, dict[str, Any]]:
    """One POST to 127.0.0.1:``port`` (or on ``conn``, an ``http.client.HTTPConnection`` kept
    open: ``port`` is then not used); returns the status and the JSON answer ({} without a
    body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}
    finally:
        if own:
            conn.close()


@attrs.frozen
class HTTPResponse:
    """One HTTP/1.1 response as :func:`parse_responses` read it (header names in lower case)."""

    code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, which must be JSON (the ingest site answers in JSON)."""
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def parse_responses(data: bytes) -> list[HTTPResponse]:
    """Every complete response in ``data`` (what a site wrote to a transport, or read from a
    socket), in order; interim ``100 Continue`` responses are skipped, an incomplete last one
    is left out. Bodies are read by ``Content-Length``."""
    responses = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return responses
        status, *lines = head.decode("latin-1").split("\r\n")
        code = int(status.split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (li.split(":", 1) for li in lines)}
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            return responses
        data = rest[length:]
        if code != 100:
            responses.append(HTTPResponse(code, headers, rest[:length]))


class RelpClient:
    """A blocking RELP client for tests, speaking as rsyslog's ``omrelp`` does (librelp's
    frames, offers and TXNRs) without its retries: open a session, send messages, read the
    answers.

    ::

        with RelpClient(port) as relp:
            txnrs = [relp.send(b"<13>1 - h app - - - hello")]
            assert relp.wait(txnrs) == {txnrs[0]: (200, "OK")}

    :param port: the RELP listener's port on ``host``.
    :param sock: a connected socket to use instead (a TLS one, from :func:`tls_connect`).
    """

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", *, timeout: float = WAIT, sock: Any = None
    ) -> None:
        self.sock = sock if sock is not None else socket.create_connection((host, port), timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        #: the answer of each TXNR: (code, text)
        self.answers: dict[int, tuple[int, str]] = {}
        #: the server sent ``serverclose`` (it is closing the session)
        self.server_closed = False
        self._next = 1
        self._buffer = b""

    def __enter__(self) -> RelpClient:
        self.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if not self.server_closed and exc_info[0] is None:
                self.close()
        finally:
            self.sock.close()

    def _command(self, command: bytes, data: bytes) -> int:
        txnr = self._next
        self._next = 1 if txnr == 999_999_999 else txnr + 1
        frame = b"%d %s %d" % (txnr, command, len(data))
        self.sock.sendall(frame + (b" " + data if data else b"") + b"\n")
        return txnr

    def open(self) -> str:
        """The ``open`` command with omrelp's offers; returns the server's answer text (its
        own offers). Raises ``AssertionError`` if it is not ``200``."""
        offers = b"relp_version=0\nrelp_software=syslogsrc.testing\ncommands=syslog"
        txnr = self._command(b"open", offers)
        code, text = self.wait([txnr])[txnr]
        assert code == 200, f"open answered {code} {text}"
        return text

    def send(self, message: bytes) -> int:
        """One ``syslog`` frame; returns its TXNR (its answer comes later: :meth:`wait`)."""
        return self._command(b"syslog", message)

    def close(self) -> tuple[int, str] | None:
        """The ``close`` command; waits for its answer (which the server sends once every
        earlier frame is answered) and returns it, None if the server closed first."""
        txnr = self._command(b"close", b"")
        try:
            return self.wait([txnr]).get(txnr)
        except ConnectionError:
            return None

    def wait(self, txnrs: Sequence[int]) -> dict[int, tuple[int, str]]:
        """Read answers until every one of ``txnrs`` has come; returns theirs. Raises
        ``TimeoutError`` after ``timeout`` seconds without all, ``ConnectionError`` if the
        server closes first."""
        deadline = time.monotonic() + self.timeout
        while any(t not in self.answers for t in txnrs):
            if not self._read(deadline):
                missing = [t for t in txnrs if t not in self.answers]
                raise ConnectionError(f"the server closed; no answer for {missing[:10]}")
        return {t: self.answers[t] for t in txnrs}

    def _read(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no RELP answer in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no RELP answer in time") from None
        except OSError:
            return False
        if not data:
            return False
        self._buffer += data
        while True:
            frame = self._frame()
            if frame is None:
                return True
            txnr, command, body = frame
            if command == b"serverclose":
                self.server_closed = True
            elif command == b"rsp":
                code, _, text = body.partition(b" ")
                self.answers[txnr] = (int(code or b"0"), text.decode("utf-8", "replace"))

    def _frame(self) -> tuple[int, bytes, bytes] | None:
        """The next whole frame of the buffer, taken out of it (None: not all read yet)."""
        head = _RELP_HEADER.match(self._buffer)
        if head is None:
            return None
        length = int(head[3])
        start = head.end() if length else head.end() - 1  # DATALEN 0: the LF ends the frame
        end = start + length
        if len(self._buffer) < end + 1:
            return None
        body, self._buffer = self._buffer[start:end], self._buffer[end + 1 :]
        return int(head[1]), head[2], body


#: TXNR SP COMMAND SP DATALEN, then SP DATA or the LF of an empty frame
_RELP_HEADER = re.compile(rb"(\d{1,9}) ([a-z]{1,32}) (\d{1,9})[ \n]")
