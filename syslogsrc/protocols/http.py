"""HTTP ingest: clients POST syslog messages (raw lines, JSON, NDJSON) to a Twisted Web site.

:class:`HTTPIngestSite` is the whole public API. The rest of the module, in the order a request
meets it:

- ``_BodyReader`` decodes the body *while it arrives* (``Content-Encoding: gzip`` inflated
  incrementally) and never holds more than ``http-max-body`` decoded bytes: past the limit it
  drops what it has and only reads on, so neither a large upload nor a gzip bomb costs memory.
- ``_split_body`` turns a complete body into messages, validating all of it first: a request
  is posted whole or not at all.
- ``_IngestProducer`` is the site's ``IPushProducer``: it posts one request's messages to
  the sink and, when the sink pauses it in the middle, keeps the rest until it resumes.
- ``_IngestResource`` routes (ingest path, health path, 404/405) and answers in JSON.

The reply comes after the request's messages were handed to the sink (not after delivery to a
destination), as with syslog-ng's own ``webhook()`` source.
"""

from __future__ import annotations

import hmac
import io
import json
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

import attrs
from twisted.internet.interfaces import IAddress, IPushProducer, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from zope.interface import implementer

from syslogsrc.access import ListenerAccess
from syslogsrc.interfaces import IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.parsing import ParsedMessage, json_bytes, json_number, parse, parse_json_object
from syslogsrc.protocols._tracking import RateLimitedLogs

__all__ = ["HTTPIngestSite"]

#: One message: a raw frame the sink parses, or a JSON object parsed here.
_Message = bytes | ParsedMessage

#: Content-Encoding -> zlib wbits (gzip: gzip wrapper only; deflate: zlib wrapper, or gzip).
_CODINGS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": 32 + zlib.MAX_WBITS,
}
_NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
_TLS_HANDSHAKE = b"\x16"  # the first byte of a TLS handshake record (a ClientHello)
_MAX_NAME_BYTES = 255  # syslog-ng's longest name-value pair name


# -- replies ------------------------------------------------------------------------------------


@attrs.frozen
class _Reply:
    """A response: status code, JSON body, extra headers."""

    code: int
    body: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def status(self) -> str:
        return str(self.body["status"])


def _too_large(limit: int) -> _Reply:
    return _Reply(413, {"status": "too-large", "error": f"body larger than {limit} bytes"})


def _malformed(error: str) -> _Reply:
    return _Reply(400, {"status": "malformed", "error": error})


def _not_allowed(allow: bytes) -> _Reply:
    return _Reply(405, {"status": "method-not-allowed"}, ((b"Allow", allow),))


_FORBIDDEN = _Reply(403, {"status": "forbidden"})


def _rate_limited(wait: float) -> _Reply:
    retry = b"%d" % max(1, math.ceil(wait))
    return _Reply(429, {"status": "rate-limited"}, ((b"Retry-After", retry),))


_UNAUTHORIZED = _Reply(401, {"status": "unauthorized"}, ((b"WWW-Authenticate", b"Bearer"),))
_NOT_FOUND = _Reply(404, {"status": "not-found"})
_FLOW_CONTROLLED = _Reply(503, {"status": "flow-controlled"}, ((b"Retry-After", b"1"),))
_STOPPING = _Reply(503, {"status": "stopping"}, ((b"Retry-After", b"1"),))
_INTERNAL_ERROR = _Reply(500, {"status": "error"})
_HEALTHY = _Reply(200, {"status": "ok"})


def _respond(request: _IngestRequest, reply: _Reply) -> None:
    """Send ``reply``, unless the client has gone or was answered already."""
    if request.gone or request.finished:
        return
    body = json.dumps(reply.body, separators=(",", ":")).encode("utf-8")
    request.setResponseCode(reply.code)
    request.setHeader(b"Server", b"syslogsrc")
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    for name, value in reply.headers:
        request.setHeader(name, value)
    request.write(body)
    request.finish()


# -- the body, as it arrives ----------------------------------------------------------------------


class _BodyReader:
    """One request body, decoded while it streams in, never more than ``limit`` bytes kept.

    The limit applies on the wire and after decompression, whichever is passed first. Once a
    body is rejected (too large, undecodable, or refused on its headers), the rest of it is
    read and thrown away, so the reply goes out on a connection in a clean state.
    """

    def __init__(self, out: BinaryIO, limit: int, wbits: int | None) -> None:
        self._out = out
        self._limit = limit
        self._wbits = wbits
        self._inflater: Any = None  # zlib.Decompress while inside a compressed member
        self._wire = 0
        self.decoded = 0  #: decoded bytes kept so far
        self.rejection: _Reply | None = None

    def reject(self, reply: _Reply) -> None:
        """Refuse the body: drop what was kept, discard the rest. The first reason wins."""
        if self.rejection is None:
            self.rejection = reply
            self._inflater = None
            self._out.seek(0)
            self._out.truncate()

    def feed(self, data: bytes) -> None:
        if self.rejection is not None:
            return
        self._wire += len(data)
        if self._wire > self._limit:
            self.reject(_too_large(self._limit))
        elif self._wbits is None:
            self._keep(data)
        else:
            self._inflate(data)

    def finish(self) -> None:
        """The whole body has arrived."""
        if self.rejection is None and self._inflater is not None:
            self.reject(_malformed("compressed body ends in the middle of a stream"))

    def _inflate(self, data: bytes) -> None:
        # max_length bounds every step: a 10 kB bomb never becomes more than limit + 1 bytes.
        while data and self.rejection is None:
            if self._inflater is None:
                self._inflater = zlib.decompressobj(self._wbits)
            inflater = self._inflater
            try:
                chunk = inflater.decompress(data, self._limit - self.decoded + 1)
            except zlib.error as e:
                self.reject(_malformed(f"cannot decompress the body: {e}"))
                return
            self._keep(chunk)
            if inflater.eof:  # end of one gzip member; another may follow (RFC 1952 2.2)
                data = inflater.unused_data
                self._inflater = None
            else:
                data = inflater.unconsumed_tail

    def _keep(self, chunk: bytes) -> None:
        self.decoded += len(chunk)
        if self.decoded > self._limit:
            self.reject(_too_large(self._limit))
        else:
            self._out.write(chunk)


def _bearer_matches(headers: Headers, token: bytes) -> bool:
    """``Authorization: Bearer <token>`` (RFC 6750 2.1), compared in constant time."""
    values = headers.getRawHeaders(b"authorization") or [b""]
    scheme, _, given = values[0].strip().partition(b" ")
    return hmac.compare_digest(given.strip(), token) and scheme.lower() == b"bearer"


def _open_body(
    out: BinaryIO, headers: Headers, length: int | None, options: ListenerOptions
) -> _BodyReader:
    """Decide what to do with a body from the request headers alone, before any of it is read."""
    codings = _header_text(headers, b"content-encoding").lower().split(",")
    codings = [c.strip() for c in codings if c.strip() not in ("", "identity")]
    wbits = _CODINGS.get(codings[0]) if len(codings) == 1 else None
    reader = _BodyReader(out, options.http_max_body, wbits)
    if options.http_token and not _bearer_matches(headers, options.http_token.encode("utf-8")):
        reader.reject(_UNAUTHORIZED)
    elif length is not None and length > options.http_max_body:
        reader.reject(_too_large(options.http_max_body))
    elif codings and wbits is None:
        error = f"unsupported Content-Encoding {', '.join(codings)!r}; use gzip or deflate"
        reader.reject(_Reply(415, {"status": "unsupported-encoding", "error": error}))
    return reader


# -- the body, as messages ----------------------------------------------------------------------


class _MalformedBody(ValueError):
    """The body does not hold what its Content-Type says; ``str()`` says where."""


def _split_body(media_type: str, body: bytes, max_size: int) -> tuple[list[_Message], int]:
    """All the messages of a body, or ``_MalformedBody`` (and then none of them), and how
    many were cut to ``max_size``."""
    if media_type in _NDJSON_TYPES:
        return _JsonMessages(max_size).ndjson(body)
    if media_type == "application/json" or media_type.endswith("+json"):
        return _JsonMessages(max_size).json(body)
    return _split_lines(body, max_size)


def _split_lines(body: bytes, max_size: int) -> tuple[list[_Message], int]:
    """LF-separated raw messages; a CR before the LF is dropped, blank lines are skipped."""
    lines = (line[:-1] if line.endswith(b"\r") else line for line in body.split(b"\n"))
    messages: list[_Message] = [line for line in lines if line.strip()]
    if len(body) <= max_size:  # no line can be longer
        return messages, 0
    return _truncate(messages, max_size)


def _truncate(messages: list[_Message], max_size: int) -> tuple[list[_Message], int]:
    """Raw frames cut to ``max_size``."""
    truncated = 0
    for i, message in enumerate(messages):
        if type(message) is bytes and len(message) > max_size:
            messages[i] = message[:max_size]
            truncated += 1
    return messages, truncated


#: Compact JSON, in UTF-8 bytes, is less than this many times longer than the text it was
#: decoded from, in characters: a float grows at most 4.5 times ("1e15" is "1000000000000000.0"
#: in Python's form), a character at most 4 (UTF-8); escapes only shrink.
_JSON_GROWTH = 8


class _JsonMessages:
    """The messages of a JSON or NDJSON body. Each object is parsed here, once, into the
    message its compact JSON text would give as a frame (``parse(text, "json")``); when that
    text could be longer than ``max_size`` it is made, and cut like any frame."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.truncated = 0

    def ndjson(self, body: bytes) -> tuple[list[_Message], int]:
        messages: list[_Message] = []
        append = messages.append
        short = self.max_size // _JSON_GROWTH
        for number, line in enumerate(_utf8(body).split("\n"), 1):
            if line.strip():
                doc = _load_json(line, number)
                if type(doc) is not dict:
                    raise _MalformedBody(f"line {number}: expected a JSON object, not {_kind(doc)}")
                # message()'s common case: a line too short to be cut
                append(
                    parse_json_object(doc) if len(line) <= short else self.message(doc, len(line))
                )
        return messages, self.truncated

    def json(self, body: bytes) -> tuple[list[_Message], int]:
        doc = _load_json(_utf8(body), "body")
        if isinstance(doc, dict):
            return [self.message(doc, len(body))], self.truncated
        if not isinstance(doc, list):
            raise _MalformedBody(f"body: expected a JSON object or array, not {_kind(doc)}")
        messages: list[_Message] = []
        for index, element in enumerate(doc):
            if isinstance(element, dict):
                messages.append(self.message(element, len(body)))
            elif type(element) is str:  # not a number, which is kept as text too
                if element.strip():
                    messages.append(element.encode("utf-8", "replace"))
            else:
                raise _MalformedBody(
                    f"element {index}: expected an object or a string, not {_kind(element)}"
                )
        messages, cut = _truncate(messages, self.max_size)  # the strings among them
        return messages, self.truncated + cut

    def message(self, doc: dict[str, Any], source_length: int) -> ParsedMessage:
        max_size = self.max_size
        if source_length * _JSON_GROWTH <= max_size:
            return parse_json_object(doc, lambda: json_bytes(doc).decode("utf-8"))
        frame = json_bytes(doc)
        if len(frame) > max_size:
            self.truncated += 1
            frame = frame[:max_size]
        return parse(frame, "json")


def _utf8(body: bytes) -> str:
    """JSON text is UTF-8 (RFC 8259 8.1); a leading byte order mark is tolerated."""
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        raise _MalformedBody(f"line {line}: not UTF-8 ({e.reason})") from None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _float_text(text: str) -> str:
    """A JSON float as the text Python's encoder writes for it (what the message keeps)."""
    value = float(text)
    if value != value:
        return json_number("NaN")
    if value in (_INFINITY, -_INFINITY):
        return json_number("Infinity" if value > 0 else "-Infinity")
    return json_number(float.__repr__(value))


_INFINITY = float("inf")

#: what json.loads(text, parse_constant=_no_constants, ...) builds at every call, built once;
#: floats are kept as text in the form Python's encoder gives them, integers as ints (C; the
#: message keeps them in the same form, see parsing.json_number)
_decoder = json.JSONDecoder(parse_constant=_no_constants, parse_float=_float_text, parse_int=int)
_decode_json = _decoder.decode
_scan_json = _decoder.scan_once


def _load_json(text: str, where: str | int) -> Any:
    """The JSON value of ``text``; ``where`` (a line number, or what the text is) is for the
    error."""
    try:
        if text[:1] == "{":  # the common line: the C scanner at once, without decode()'s frames
            try:
                doc, end = _scan_json(text, 0)
            except StopIteration:
                pass  # decode() says what is wrong
            else:
                if end == len(text) or not text[end:].strip():
                    return doc
        if text.startswith("\ufeff"):  # json.loads's own error for it
            return json.loads(text, parse_constant=_no_constants)
        return _decode_json(text)
    except RecursionError:
        raise _MalformedBody(f"{_where(where)}: JSON nested too deeply") from None
    except ValueError as e:  # json.JSONDecodeError says line and column
        raise _MalformedBody(f"{_where(where)}: invalid JSON: {e}") from None


def _where(where: str | int) -> str:
    return f"line {where}" if type(where) is int else str(where)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if type(value) is int:
        return "a number"
    if isinstance(value, str):
        return "a string" if type(value) is str else "a number"  # floats are kept as text
    return "an array" if isinstance(value, list) else "an object"


def _header_text(headers: Headers, name: bytes) -> str:
    values = headers.getRawHeaders(name)
    return ", ".join(v.decode("utf-8", "replace") for v in values) if values else ""


# -- flow control -------------------------------------------------------------------------------


class _Delivery:
    """The messages of one accepted request, posted in order, perhaps across pauses."""

    def __init__(
        self,
        request: _IngestRequest,
        messages: Sequence[_Message],
        origin: Origin,
        done: Callable[[_Delivery, Failure | None], None],
    ) -> None:
        self.request = request
        self.messages = messages
        self.origin = origin  #: the request's, with its pairs (path, query, headers)
        self.done = done  #: called once: (self, None) when all are posted, else the failure
        self.position = 0  #: messages posted so far

    @property
    def remaining(self) -> int:
        return len(self.messages) - self.position

    def hold_connection(self) -> None:
        """Stop reading the client's connection while the rest waits for a resume, so the
        wait is not idle time for the listener's idle timeout. twisted.web resumes reading
        once the request is answered (``HTTPChannel.requestDone``)."""
        channel = None if self.request.gone else self.request.channel
        transport = getattr(channel, "transport", None)
        if transport is not None:
            IPushProducer(transport, _NO_PRODUCER).pauseProducing()


@implementer(IPushProducer)
class _NoProducer:
    """Stands in for a transport that cannot pause (twisted.web does the same)."""

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


_NO_PRODUCER = _NoProducer()


class _SinkStopped(Exception):
    """The sink stopped the producer before all messages of a request were posted."""


@implementer(IPushProducer)
class _IngestProducer:
    """The site's producer: posts one request at a time, and nothing while paused.

    A pause can arrive from inside ``sink.post`` (that is how syslog-ng's ``suspend()`` comes);
    the rest of that request then waits here, in order, for ``resumeProducing``. Only one
    request waits: while it does, others are turned away with 503 (the client retries).
    """

    def __init__(self, sink: IMessageSink) -> None:
        self._sink = sink
        self.paused = False
        self.stopped = False
        self._pending: _Delivery | None = None
        self._posting = False

    @property
    def accepting(self) -> bool:
        return not (self.paused or self.stopped or self._pending or self._sink.paused)

    def deliver(self, delivery: _Delivery) -> None:
        if not self.accepting:
            raise RuntimeError("deliver() while not accepting")
        self._pending = delivery
        self._post()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if not self._posting:  # else the loop in _post, further up the stack, goes on
            self._post()

    def stopProducing(self) -> None:
        self.stopped = True
        if not self._posting:
            self._post()

    def _post(self) -> None:
        delivery = self._pending
        if delivery is None:
            return
        failure: Failure | None = None
        self._posting = True
        try:
            # One call per request, and after a pause one per resume: each a batch, so a batch
            # is never left open while waiting for a resume (in syslog-ng the resume needs the
            # window to refill, which needs these messages to leave the batch).
            while delivery.remaining and not (self.paused or self.stopped):
                position = delivery.position
                messages = delivery.messages
                rest = messages[position:] if position else messages
                taken = self._sink.post(rest, delivery.origin)
                delivery.position += taken
                if taken < len(rest) and not self.paused:
                    break  # a sink that takes less pauses us; wait for it all the same
        except Exception:
            failure = Failure()
        finally:
            self._posting = False
        if failure is None and delivery.remaining:
            if not self.stopped:
                delivery.hold_connection()
                return  # paused: the rest waits for resumeProducing
            failure = Failure(_SinkStopped())
        self._pending = None
        delivery.done(delivery, failure)


# -- logging ------------------------------------------------------------------------------------


# -- the request and the resource ---------------------------------------------------------------


class _IngestRequest(server.Request):
    """A request whose body goes through a ``_BodyReader`` as it arrives.

    twisted.web would buffer the whole body in ``content`` before ``render``; here the limit is
    checked on ``Content-Length`` in :meth:`gotLength` and on every chunk, and only the decoded
    body (at most ``http-max-body`` bytes) is kept in ``content``.
    """

    body: _BodyReader
    gone = False  #: the connection was lost (nothing can be answered)

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()
        options = self.channel.site.options
        self.body = _open_body(self.content, self.requestHeaders, length, options)

    def handleContentChunk(self, data: bytes) -> None:
        self.body.feed(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.body.finish()
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        self.gone = True
        super().connectionLost(reason)


class _IngestChannel(http.HTTPChannel):
    """twisted.web's HTTP/1.1 channel, with three changes:

    - a ``progress`` counter for the connection tracker: requests received whole. Its idle
      timer restarts on those (and on every ``PROGRESS_BYTES``), so a slow upload or a request
      trickled in a byte at a time times out;
    - a client that pipelines requests and never reads the answers is not read either while
      our answers wait in the send buffer. twisted.web pauses reading when the transport's
      buffer fills only *between* requests; our answers are written while a request is being
      handled, so it never paused, and the answers piled up in memory without bound (85 MB
      after 8 s of one such client);
    - requests twisted.web answers itself with 400 (a bad request line or header) are counted
      as malformed and logged like ours; a connection to an ``http:`` listener that starts with
      a TLS handshake record (an HTTPS client at the wrong port, which twisted.web would keep
      waiting for a line end) is closed at once, counted as refused and logged.
    """

    progress = 0
    _seen_data = False

    def dataReceived(self, data: bytes) -> None:
        if not self._seen_data and data:
            self._seen_data = True
            site = getattr(self, "site", None)
            if (
                data[:1] == _TLS_HANDSHAKE
                and isinstance(site, HTTPIngestSite)
                and site.transport_name == "http"
            ):
                site.stats.refused += 1
                site.bad_requests.emit(
                    LogLevel.warn,
                    "tls-on-plain",
                    "HTTP: closed a connection from {peer} that began a TLS handshake on a plain"
                    " port (an HTTPS client? HTTPS listens with https:)",
                    peer=_peer_text(self.transport.getPeer()),
                )
                self.transport.loseConnection()
                self.dataReceived = lambda data: None  # type: ignore[method-assign]
                return
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self.progress += 1
        super().allContentReceived()

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self._handlingRequest:
            # twisted.web leaves reading on here; requestDone() will not resume it while the
            # transport is still full, and resumeProducing() will once it has drained.
            self._networkProducer.pauseProducing()

    def _respondToBadRequestAndDisconnect(self) -> None:
        site = getattr(self, "site", None)
        if isinstance(site, HTTPIngestSite):
            site.stats.malformed += 1
            peer = self.transport.getPeer() if self.transport is not None else None
            site.bad_requests.emit(
                LogLevel.warn,
                "bad-request",
                "HTTP 400 bad-request to {peer}: not an HTTP/1.x request twisted.web could read",
                peer=_peer_text(peer) if peer is not None else "?",
            )
        super()._respondToBadRequestAndDisconnect()


def _ingest_channel_protocol(site: HTTPIngestSite) -> Any:
    """``HTTPFactory.protocol``: twisted.web's generic channel (HTTP/1.1, or HTTP/2 if ALPN
    chose it) around an ``_IngestChannel``."""
    return http._GenericHTTPChannelProtocol(_IngestChannel())


class _IngestResource(Resource):
    """Routes every request (``isLeaf``) and answers it in JSON."""

    isLeaf = True

    def __init__(
        self,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        transport: str,
        producer: _IngestProducer,
        log: RateLimitedLogs,
        access: ListenerAccess | None = None,
    ) -> None:
        super().__init__()
        self._access = access
        self._sink = sink
        self._options = options
        self._stats = stats
        self._transport = transport
        self._producer = producer
        self._log = log
        prefix = options.http_path.rstrip("/").encode("utf-8")
        self._prefix = prefix + b"/"  # a path is ours if it equals prefix or starts with this
        self._exact = prefix or b"/"
        self._health = prefix + b"/health"

    def render(self, request: _IngestRequest) -> int:  # type: ignore[override]
        try:
            self._route(request)
        except Exception:
            self._log.emit(LogLevel.error, "internal", "HTTP request failed", Failure())
            _respond(request, _INTERNAL_ERROR)
        return server.NOT_DONE_YET

    def _route(self, request: _IngestRequest) -> None:
        access = self._access
        if access is not None:
            self._route_limited(request, access)
        else:
            self._route_open(request)

    def _route_limited(self, request: _IngestRequest, access: ListenerAccess) -> None:
        """The allow list (403 for every path) and the sender's rate (429 for ingest
        requests), then the usual routing. ``access`` counts and logs its refusals."""
        peer = request.getClientAddress()
        host = access.host_of(peer)
        if not access.allows(host, _peer_text(peer)):
            _respond(request, _FORBIDDEN)
            return
        buckets = access.buckets
        ingest = request.method == b"POST" and request.path != self._health
        if buckets is None or host is None or not ingest or request.body.rejection is not None:
            self._route_open(request)
            return
        wait = buckets.wait(buckets.tokens(host))
        if wait:
            access.limited(host, _peer_text(peer))
            _respond(request, _rate_limited(wait))
            return
        # A request is let in while its sender holds a token, then charged all its messages
        # (it may go into debt, which its next requests wait out).
        received = self._stats.received
        self._route_open(request)
        buckets.charge(host, self._stats.received - received)

    def _route_open(self, request: _IngestRequest) -> None:
        path, method = request.path, request.method
        if path == self._health:
            if method in (b"GET", b"HEAD"):
                _respond(request, _HEALTHY if self._producer.accepting else _FLOW_CONTROLLED)
            else:
                self._refuse(request, _not_allowed(b"GET, HEAD"))
        elif path != self._exact and not path.startswith(self._prefix):
            self._refuse(request, _NOT_FOUND)
        elif method != b"POST":
            self._refuse(request, _not_allowed(b"POST"))
        elif request.body.rejection is not None:
            self._refuse(request, request.body.rejection)
        else:
            self._ingest(request)

    def _ingest(self, request: _IngestRequest) -> None:
        body = request.content.getvalue()
        self._stats.bytes += len(body)
        media_type = _header_text(request.requestHeaders, b"content-type")
        try:
            messages, truncated = _split_body(
                media_type.partition(";")[0].strip().lower(), body, self._options.max_message_size
            )
        except _MalformedBody as e:
            self._refuse(request, _malformed(str(e)))
            return
        if not self._producer.accepting:
            self._stats.dropped += len(messages)
            self._refuse(request, _STOPPING if self._producer.stopped else _FLOW_CONTROLLED)
            return
        self._stats.received += len(messages)
        self._stats.truncated += truncated
        self._producer.deliver(_Delivery(request, messages, self._origin(request), self._done))

    def _done(self, delivery: _Delivery, failure: Failure | None) -> None:
        request = delivery.request
        if failure is None:
            count = len(delivery.messages)
            _respond(request, _Reply(200, {"status": "received", "messages": count}))
            return
        self._stats.dropped += delivery.remaining
        if failure.check(_SinkStopped):
            _respond(request, _STOPPING)
        else:
            self._log.emit(LogLevel.error, "sink", "HTTP: the sink failed a post", failure)
            _respond(request, _INTERNAL_ERROR)

    def _refuse(self, request: _IngestRequest, reply: _Reply) -> None:
        if reply.code == 400:
            self._stats.malformed += 1
        elif reply.code == 413:
            self._stats.dropped += 1
        self._log.emit(
            LogLevel.warn if reply.code < 500 else LogLevel.info,
            reply.status,
            "HTTP {code} {status} to {peer} for {method} {path}: {error}",
            code=reply.code,
            status=reply.status,
            peer=_peer_text(request.getClientAddress()),
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            error=reply.body.get("error", ""),
        )
        _respond(request, reply)

    def _origin(self, request: _IngestRequest) -> Origin:
        peer, local = request.getClientAddress(), request.getHost()
        return Origin(
            transport=self._transport,
            listener=self._stats,
            peer_host=getattr(peer, "host", None),
            peer_port=getattr(peer, "port", None),
            local_port=getattr(local, "port", None),
            pairs=_pairs(request, self._options),
        )


def _pairs(request: _IngestRequest, options: ListenerOptions) -> dict[str, str]:
    """Name-value pairs of a request: its path, query arguments and chosen headers."""

    def text(value: bytes) -> str:
        return value.decode("utf-8", "replace")

    pairs = {"http.path": text(unquote_to_bytes(request.path))}
    for name, values in request.args.items():
        # syslog-ng refuses names over 255 bytes, with an error line per message: leave out
        # query arguments whose name would make one (the client chooses them)
        if name and values:
            pair = f"http.query.{text(name)}"
            if len(pair.encode("utf-8")) <= _MAX_NAME_BYTES:
                pairs[pair] = text(values[-1])
    for name in options.http_headers:
        value = _header_text(request.requestHeaders, name.encode("latin-1"))
        if value:
            pairs[f"http.header.{name.lower()}"] = value
    return pairs


def _peer_text(address: IAddress) -> str:
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return str(address) if host is None else f"{host}:{port}"


# -- the site -----------------------------------------------------------------------------------


class HTTPIngestSite(server.Site):
    """An HTTP(S) listener's site: ``POST`` under ``options.http_path`` posts to ``sink``.

    Connection limits and idle timeouts are not enforced here: the listener wraps this site
    in a connection tracker for that. ``access`` (syslogsrc.access) is the listener's allow
    list and rate limit: a sender outside the list gets 403 for every request, one over its
    rate gets 429 with ``Retry-After`` for a POST. The site registers its producer
    (``producer``) with the sink when it starts listening (``startFactory``) and
    unregisters it when it stops.
    No access log is written; the listener's counters are in ``stats``.
    """

    protocol = _ingest_channel_protocol

    def __init__(
        self,
        reactor: IReactorTime,
        sink: IMessageSink,
        options: ListenerOptions,
        stats: ListenerStats,
        *,
        transport: str = "http",
        access: ListenerAccess | None = None,
    ) -> None:
        self.sink = sink
        self.options = options
        self.stats = stats
        self.transport_name = transport
        self.producer = _IngestProducer(sink)
        log = self.bad_requests = RateLimitedLogs(reactor, logger=Logger())
        resource = _IngestResource(sink, options, stats, transport, self.producer, log, access)
        super().__init__(
            resource,
            requestFactory=_IngestRequest,
            reactor=reactor,
            parsePOSTFormSubmission=False,  # `curl -d` says form-urlencoded: it is a log line
        )

    def startFactory(self) -> None:
        super().startFactory()
        self.sink.register_producer(self.producer)

    def stopFactory(self) -> None:
        self.sink.unregister_producer(self.producer)
        self.bad_requests.flush()
        super().stopFactory()

    def log(self, request: server.Request) -> None:
        """No access log: one line per ingested request would drown the logs it delivers."""
