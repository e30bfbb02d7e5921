"""HTTP ingest: clients POST syslog messages (raw lines, JSON, NDJSON) to a Twisted Web site.

:class:`HTTPIngestSite` is the whole public API. A request's body is decoded as it arrives
and split into messages by the sans-IO :mod:`syslogsrc.httpbody` (``BodyDecoder``,
``split_body``); the rest of the module, in the order a request meets it:

- ``_IngestProducer`` is the site's ``IPushProducer``: it posts one request's messages to
  the sink through a :class:`~syslogsrc.producers.Backlog` and, when the sink pauses it in
  the middle, keeps the rest until it resumes.
- ``_IngestResource`` routes (ingest path, health path, 404/405) and answers in JSON.

The reply comes after the request's messages were handed to the sink (not after delivery to a
destination), as with syslog-ng's own ``webhook()`` source; with ``http-ack`` and a sink that
acknowledges (:class:`~syslogsrc.interfaces.IAcknowledgingSink`), once every message of the
request is stored: ``200 {"status": "stored"}``, ``500 {"status": "not-stored"}`` if one could
not be, or ``503 {"status": "not-acknowledged"}`` after ``http-ack-timeout`` seconds.
"""

from __future__ import annotations

import hmac
import io
import json
import math
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
from syslogsrc.httpbody import (
    CODINGS,
    BodyDecoder,
    MalformedBody,
    Reply,
    malformed,
    split_body,
    too_large,
)
from syslogsrc.interfaces import IAcknowledgingSink, IMessageSink, ListenerStats, Origin
from syslogsrc.options import ListenerOptions
from syslogsrc.parsing import MAX_NAME_BYTES, ParsedMessage
from syslogsrc.producers import Backlog, Batch, ProducerStopped
from syslogsrc.protocols._ratelimit import RateLimitedLogs
from syslogsrc.protocols._sniff import looks_like_tls

__all__ = ["HTTPIngestSite"]


# -- replies ------------------------------------------------------------------------------------


def _not_allowed(allow: bytes) -> Reply:
    return Reply(405, {"status": "method-not-allowed"}, ((b"Allow", allow),))


_FORBIDDEN = Reply(403, {"status": "forbidden"})


def _rate_limited(wait: float) -> Reply:
    retry = b"%d" % max(1, math.ceil(wait))
    return Reply(429, {"status": "rate-limited"}, ((b"Retry-After", retry),))


_UNAUTHORIZED = Reply(401, {"status": "unauthorized"}, ((b"WWW-Authenticate", b"Bearer"),))
_NOT_FOUND = Reply(404, {"status": "not-found"})
_FLOW_CONTROLLED = Reply(503, {"status": "flow-controlled"}, ((b"Retry-After", b"1"),))
_STOPPING = Reply(503, {"status": "stopping"}, ((b"Retry-After", b"1"),))
_INTERNAL_ERROR = Reply(500, {"status": "error"})


def _not_acknowledged(timeout: float) -> Reply:
    error = (
        f"the messages were not stored within {timeout:g} s (http-ack-timeout); they may still"
        " be: a retry can store them twice"
    )
    return Reply(503, {"status": "not-acknowledged", "error": error}, ((b"Retry-After", b"1"),))


_HEALTHY = Reply(200, {"status": "ok"})


def _respond(request: _IngestRequest, reply: Reply) -> None:
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


def _bearer_matches(headers: Headers, token: bytes) -> bool:
    """``Authorization: Bearer <token>`` (RFC 6750 2.1), compared in constant time."""
    values = headers.getRawHeaders(b"authorization") or [b""]
    scheme, _, given = values[0].strip().partition(b" ")
    return hmac.compare_digest(given.strip(), token) and scheme.lower() == b"bearer"


def _open_body(
    out: BinaryIO, headers: Headers, length: int | None, options: ListenerOptions
) -> BodyDecoder:
    """Decide what to do with a body from the request headers alone, before any of it is read."""
    codings = _header_text(headers, b"content-encoding").lower().split(",")
    codings = [c.strip() for c in codings if c.strip() not in ("", "identity")]
    wbits = CODINGS.get(codings[0]) if len(codings) == 1 else None
    reader = BodyDecoder(out, options.http_max_body, wbits)
    if options.http_token and not _bearer_matches(headers, options.http_token.encode("utf-8")):
        reader.reject(_UNAUTHORIZED)
    elif length is not None and length > options.http_max_body:
        reader.reject(too_large(options.http_max_body))
    elif codings and wbits is None:
        error = f"unsupported Content-Encoding {', '.join(codings)!r}; use gzip or deflate"
        reader.reject(Reply(415, {"status": "unsupported-encoding", "error": error}))
    return reader


def _header_text(headers: Headers, name: bytes) -> str:
    values = headers.getRawHeaders(name)
    return ", ".join(v.decode("utf-8", "replace") for v in values) if values else ""


# -- flow control -------------------------------------------------------------------------------


class _Delivery(Batch):
    """The messages of one accepted request, posted in order, perhaps across pauses; ``done``
    is told once when they are all posted (None), or why not (the sink raised, or
    :class:`~syslogsrc.producers.ProducerStopped`: the rest is counted as dropped).

    In acknowledgement mode (``http-ack``) the messages are posted with tokens (their index
    in the request) and ``origin.acknowledge`` is :meth:`acknowledged`: the request is
    answered once every one is reported, not when they are posted."""

    __slots__ = ("count", "done", "lost", "request", "settled", "timer", "waiting")

    def __init__(
        self,
        request: _IngestRequest,
        messages: Sequence[bytes | ParsedMessage],
        origin: Origin,
        done: Callable[[_Delivery, Failure | None], None],
        *,
        acknowledging: bool = False,
    ) -> None:
        count = len(messages)
        if acknowledging:  # the request's origin, answering through this delivery
            origin = attrs.evolve(origin, acknowledge=self.acknowledged)
        super().__init__(messages, origin, list(range(count)) if acknowledging else None)
        self.request = request
        self.count = count  #: the request's messages (``messages`` is what waits)
        self.done = done
        self.settled = False  #: ``done`` was told
        #: acknowledgement mode: messages not reported yet, and reported not stored
        self.waiting = count if acknowledging else 0
        self.lost = 0
        self.timer: Any = None  #: the acknowledgement timeout's delayed call

    def finished(self, failure: Failure | None) -> None:
        self.settled = True
        self.done(self, failure)

    def acknowledged(self, tokens: Sequence[Any], stored: bool) -> None:
        """``origin.acknowledge``: the sink stored (or cannot store) these messages; the
        request is answered once all are reported and posted."""
        if self.waiting < 0:
            return  # answered already (the timeout)
        self.waiting -= len(tokens)
        if not stored:
            self.lost += len(tokens)
        if self.waiting <= 0 and self.settled:
            self.done(self, None)

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


@implementer(IPushProducer)
class _IngestProducer:
    """The site's producer: posts one request at a time through a
    :class:`~syslogsrc.producers.Backlog`, and nothing while paused.

    A pause can arrive from inside ``sink.post`` (that is how syslog-ng's ``suspend()`` comes);
    the rest of that request then waits here, in order, for ``resumeProducing``, and is posted
    in one call per resume: a batch is never left open while waiting for a resume (in syslog-ng
    the resume needs the window to refill, which needs these messages to leave the batch).
    Only one request waits: while it does, others are turned away with 503 (the client
    retries).
    """

    def __init__(self, sink: IMessageSink) -> None:
        self._sink = sink
        #: the request that waits for a resume, if any; its ``paused`` and ``stopped`` are
        #: this producer's
        self.backlog = Backlog(sink)

    @property
    def accepting(self) -> bool:
        return not (self.backlog.paused or self.backlog or self._sink.paused)

    def deliver(self, delivery: _Delivery) -> None:
        if not self.accepting:
            raise RuntimeError("deliver() while not accepting")
        self.backlog.add(delivery)
        if not delivery.settled:
            delivery.hold_connection()  # paused: the rest waits for resumeProducing

    def pauseProducing(self) -> None:
        self.backlog.pause()

    def resumeProducing(self) -> None:
        self.backlog.resume()

    def stopProducing(self) -> None:
        self.backlog.stop()


# -- logging ------------------------------------------------------------------------------------


# -- the request and the resource ---------------------------------------------------------------


class _IngestRequest(server.Request):
    """A request whose body goes through a ``BodyDecoder`` as it arrives.

    twisted.web would buffer the whole body in ``content`` before ``render``; here the limit is
    checked on ``Content-Length`` in :meth:`gotLength` and on every chunk, and only the decoded
    body (at most ``http-max-body`` bytes) is kept in ``content``.
    """

    body: BodyDecoder
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
                looks_like_tls(data)
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
        reactor: IReactorTime | None = None,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        #: acknowledgement mode: http-ack, and a sink that can say when messages are stored
        self._acknowledging = options.http_ack and IAcknowledgingSink.providedBy(sink)
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
            messages, truncated = split_body(
                media_type.partition(";")[0].strip().lower(), body, self._options.max_message_size
            )
        except MalformedBody as e:
            self._refuse(request, malformed(str(e)))
            return
        if not self._producer.accepting:
            self._stats.dropped += len(messages)
            self._refuse(request, _STOPPING if self._producer.backlog.stopped else _FLOW_CONTROLLED)
            return
        self._stats.received += len(messages)
        self._stats.truncated += truncated
        acknowledging = self._acknowledging and bool(messages)
        delivery = _Delivery(
            request, messages, self._origin(request), self._done, acknowledging=acknowledging
        )
        if acknowledging and self._reactor is not None:
            timeout = self._options.http_ack_timeout
            delivery.timer = self._reactor.callLater(timeout, self._ack_timeout, delivery)
        self._producer.deliver(delivery)

    def _done(self, delivery: _Delivery, failure: Failure | None) -> None:
        """The request's messages were all posted (``failure`` None) or not; in
        acknowledgement mode, called again by each acknowledgement until all are in."""
        request = delivery.request
        if failure is None:
            if delivery.waiting > 0:
                return  # posted; answered when the last acknowledgement comes
            _cancel(delivery)
            count = delivery.count
            if delivery.tokens is None:
                _respond(request, Reply(200, {"status": "received", "messages": count}))
            elif delivery.lost:
                self._refuse(
                    request,
                    Reply(500, {"status": "not-stored", "messages": count, "lost": delivery.lost}),
                )
            else:
                _respond(request, Reply(200, {"status": "stored", "messages": count}))
            return
        _cancel(delivery)
        # the messages not posted are counted as dropped by the producer's backlog
        if failure.check(ProducerStopped):
            _respond(request, _STOPPING)
        else:
            self._log.emit(LogLevel.error, "sink", "HTTP: the sink failed a post", failure)
            _respond(request, _INTERNAL_ERROR)

    def _ack_timeout(self, delivery: _Delivery) -> None:
        delivery.timer = None
        delivery.waiting = -1  # acknowledgements after the answer change nothing
        self._refuse(delivery.request, _not_acknowledged(self._options.http_ack_timeout))

    def _refuse(self, request: _IngestRequest, reply: Reply) -> None:
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
            stats=self._stats,
            peer_host=getattr(peer, "host", None),
            peer_port=getattr(peer, "port", None),
            local_port=getattr(local, "port", None),
            pairs=_pairs(request, self._options),
        )


def _cancel(delivery: _Delivery) -> None:
    timer, delivery.timer = delivery.timer, None
    if timer is not None and timer.active():
        timer.cancel()


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
            if len(pair.encode("utf-8")) <= MAX_NAME_BYTES:
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
        resource = _IngestResource(
            sink, options, stats, transport, self.producer, log, access, reactor
        )
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
