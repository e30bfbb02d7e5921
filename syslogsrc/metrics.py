"""Prometheus metrics of a source: its listeners' counters, read at scrape time.

Every :class:`~syslogsrc.source.TwistedSource` has a registry of its own
(:attr:`~syslogsrc.source.TwistedSource.metrics_registry`): several sources share a process inside
syslog-ng, and a reload makes a new instance in the same process, so nothing goes into
``prometheus_client``'s global registry. The registry holds one :class:`SourceCollector`, which
reads the live :class:`~syslogsrc.interfaces.ListenerStats` when scraped: the counters are kept
once, by the protocols, and cost nothing more per message.

With the ``metrics`` option (``--metrics`` for twistd) the source serves ``/metrics`` from its
own reactor (:class:`MetricsListener`), started and stopped with its listeners. The encoders are
``prometheus_client``'s (text format, or OpenMetrics when the scraper asks for it).
``prometheus_client.twisted.MetricsResource`` is not used: it renders in a thread of the global
reactor's pool, and importing it installs the global reactor, which a source inside syslog-ng must
never do (each ``run()`` has a reactor of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.web.pages import notFound
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, Site

from syslogsrc.interfaces import ListenerStats
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.protocols._tracking import ConnectionTracker

__all__ = [
    "LISTENER_COUNTERS",
    "METRICS_PATH",
    "MetricsListener",
    "MetricsResource",
    "SourceCollector",
    "metrics_endpoint",
    "new_registry",
]

#: where the metrics are served
METRICS_PATH = b"metrics"
#: scrape connections open at once; more are refused (a scraper needs one)
MAX_CONNECTIONS = 10
#: seconds a scrape connection may stay silent (keep-alive between scrapes) before it is closed
IDLE_TIMEOUT = 120.0

#: ListenerStats counter -> help text; each becomes ``syslogsrc_listener_<name>_total``
LISTENER_COUNTERS: dict[str, str] = {
    "received": "Messages (frames) read from the network.",
    "posted": "Messages handed to the daemon or the output.",
    "bytes": "Bytes read (streams: after TLS and PROXY, framing included; datagrams: their bytes).",
    "truncated": "Messages cut at max-message-size.",
    "malformed": "Frames that failed framing or parsing (delivered, tagged).",
    "refused": "Connections refused (max-connections, TLS failures).",
    "dropped": "Messages lost (read but never posted; HTTP 503/413 answers count theirs).",
    "kernel_drops": "Datagrams the kernel dropped for this socket (receive buffer full).",
    "timed_out": "Connections closed by idle-timeout.",
    "rate_limited": "Times a sender went over its rate limit.",
    "denied": "Senders outside the listener's allow list (connections, datagrams, requests).",
    "handed_over": "Messages read and not posted at a stop, left for the next instance (reload).",
    "taken_over": "Messages a previous instance read and did not post, taken over at a reload.",
}

_LABELS = ("listener", "transport")


class SourceCollector(Collector):
    """Reads a source's counters at scrape time.

    :param listeners: returns the listeners now (objects with ``name``, ``transport`` and
        ``stats``, see :class:`~syslogsrc.listen.IListener`).
    :param suspended: returns whether the source is suspended now.
    :param suspended_seconds: returns the seconds it has spent suspended, in all.
    """

    def __init__(
        self,
        listeners: Callable[[], Iterable[Any]],
        suspended: Callable[[], bool],
        suspended_seconds: Callable[[], float],
    ) -> None:
        self._listeners = listeners
        self._suspended = suspended
        self._suspended_seconds = suspended_seconds

    def collect(self) -> Iterator[Metric]:
        listeners = [(lis.name, lis.transport, lis.stats) for lis in self._listeners()]
        for field, help_text in LISTENER_COUNTERS.items():
            family = CounterMetricFamily(f"syslogsrc_listener_{field}", help_text, labels=_LABELS)
            for name, transport, stats in listeners:
                family.add_metric([name, transport], getattr(stats, field))
            yield family
        gauge = GaugeMetricFamily(
            "syslogsrc_listener_open_connections", "Connections open now.", labels=_LABELS
        )
        for name, transport, stats in listeners:
            gauge.add_metric([name, transport], stats.open_connections)
        yield gauge
        yield GaugeMetricFamily(
            "syslogsrc_source_suspended",
            "1 while the source is suspended (the daemon's window or the output is full).",
            value=1 if self._suspended() else 0,
        )
        yield CounterMetricFamily(
            "syslogsrc_source_suspended_seconds",
            "Seconds the source has spent suspended.",
            value=self._suspended_seconds(),
        )


def new_registry(collector: Collector) -> CollectorRegistry:
    """A registry of its own holding ``collector`` (never the global ``REGISTRY``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


class MetricsResource(Resource):
    """Renders ``registry`` in the reactor's thread, in the format the scraper accepts."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return encoder(self.registry)

    render_HEAD = render_GET


class _Root(Resource):
    """``/metrics`` (gzip if asked for), and 404 elsewhere."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.putChild(
            METRICS_PATH,
            EncodingResourceWrapper(MetricsResource(registry), [GzipEncoderFactory()]),
        )

    def getChild(self, path: bytes, request: Any) -> Resource:
        return notFound()


class _Quiet(Site):
    """A Site without an access log line per scrape."""

    def log(self, request: Any) -> None:
        pass


class _ValidationReactor:
    """Stands in for the reactor while a spec is only checked (at configure time there is no
    reactor yet: inside syslog-ng each ``run()`` makes its own). Endpoint parsers only store it."""


def metrics_endpoint(spec: str, reactor: Any) -> IStreamServerEndpoint:
    """Twisted's endpoint for ``spec``; raise ``OptionError("metrics", spec, why)`` if bad."""
    if not isinstance(spec, str) or not spec.strip():
        raise OptionError("metrics", spec, "must be a Twisted endpoint, e.g. tcp:9100")
    try:
        return serverFromString(reactor, spec)
    except Exception as exc:  # ValueError, TypeError, KeyError, a missing TLS file...
        why = str(exc) or type(exc).__name__
        raise OptionError(
            "metrics", spec, f"{why} (a Twisted endpoint, e.g. tcp:9100:interface=127.0.0.1)"
        ) from None


def check_metrics_spec(spec: str) -> str:
    """Validate ``spec`` without a reactor; return it."""
    metrics_endpoint(spec, _ValidationReactor())
    return spec


class MetricsListener:
    """Serves ``registry`` at ``/metrics`` on ``spec`` (a Twisted stream endpoint string).

    The same shape as the source's other listeners (``start()``/``stop()`` returning
    Deferreds). Scrape connections go through a ``ConnectionTracker`` of their own: at most
    ``MAX_CONNECTIONS`` at once, closed after ``IDLE_TIMEOUT`` seconds of silence, and
    all closed by ``stop()``, so no descriptor outlives the source's run.
    """

    def __init__(self, spec: str, reactor: Any, registry: CollectorRegistry) -> None:
        self.name = spec
        self.reactor = reactor
        self.endpoint = metrics_endpoint(spec, reactor)
        self.site = _Quiet(_Root(registry), reactor=reactor)
        #: the metrics endpoint's own connection counters (not exported)
        self.stats = ListenerStats(name=f"metrics {spec}")
        options = ListenerOptions(max_connections=MAX_CONNECTIONS, idle_timeout=IDLE_TIMEOUT)
        self.tracker = ConnectionTracker(reactor, self.site, options, self.stats)
        self._port: IListeningPort | None = None

    @property
    def address(self) -> Any:
        """The bound address once started (port 0 -> the real port), else None."""
        return self._port.getHost() if self._port is not None else None

    def start(self) -> Deferred[MetricsListener]:
        def listening(port: IListeningPort) -> MetricsListener:
            self._port = port
            return self

        return self.endpoint.listen(self.tracker).addCallback(listening)

    def stop(self) -> Deferred[None]:
        waits: list[Deferred[Any]] = [self.tracker.close_all()]
        port, self._port = self._port, None
        if port is not None:
            waits.insert(0, maybeDeferred(port.stopListening))
        d = gatherResults(waits, consumeErrors=True)
        return d.addCallback(lambda _: None)

    def __repr__(self) -> str:
        return f"<MetricsListener {self.name!r} address={self.address}>"
