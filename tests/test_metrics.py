"""Prometheus metrics: the collector reads ListenerStats at scrape time, the ``metrics`` option
serves them from the source's own reactor, and real Prometheus tools read the result.

- the collector alone (values equal the stats; suspended time; a registry per source);
- ``SyslogSource`` under :class:`~syslogsrc.host.SourceHost` (its own reactor in a run() thread,
  as in the daemon) with a TCP and a UDP listener: a known load, a scrape, the numbers compared;
  reloads keep the endpoint serving and the descriptors flat;
- ``promtool check metrics`` on a scrape, and a real ``prometheus`` scraping the endpoint and
  answering a query (skipped without ``apt-get install prometheus``, failed instead under
  SYSLOGSRC_REQUIRE_SYSLOG_NG=1).
"""

from __future__ import annotations

import gc
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemons import free_port
from prom import PrometheusServer, parse, promtool_check, scrape, scrape_text, value
from prometheus_client import REGISTRY
from twisted.python import usage

import syslogsrc._posting as posting
from syslogsrc.host import SourceHost
from syslogsrc.interfaces import ListenerStats
from syslogsrc.metrics import LISTENER_COUNTERS, SourceCollector, new_registry
from syslogsrc.service import Options
from syslogsrc.source import SyslogSource, TwistedSource

N_TCP = 25
N_UDP = 7


class _Listener:
    def __init__(self, name: str, transport: str, stats: ListenerStats) -> None:
        self.name, self.transport, self.stats = name, transport, stats


def _loaded_stats(name: str, base: int) -> ListenerStats:
    stats = ListenerStats(name)
    for i, field in enumerate(LISTENER_COUNTERS):
        setattr(stats, field, base + i)
    stats.open_connections = base + 100
    return stats


def test_collector_values_equal_the_listener_stats() -> None:
    tcp = _loaded_stats("tcp:5514:interface=127.0.0.1", 10)
    udp = _loaded_stats("udp:5514", 1000)
    listeners = [_Listener(tcp.name, "tcp", tcp), _Listener(udp.name, "udp", udp)]
    registry = new_registry(SourceCollector(lambda: listeners, lambda: True, lambda: 2.5))
    for lis in listeners:
        labels = {"listener": lis.name, "transport": lis.transport}
        for field in LISTENER_COUNTERS:
            got = registry.get_sample_value(f"syslogsrc_listener_{field}_total", labels)
            assert got == getattr(lis.stats, field), field
        got = registry.get_sample_value("syslogsrc_listener_open_connections", labels)
        assert got == lis.stats.open_connections
    assert registry.get_sample_value("syslogsrc_source_suspended") == 1
    assert registry.get_sample_value("syslogsrc_source_suspended_seconds_total") == 2.5
    # read at scrape time, not copied: a later increment shows in the next scrape
    tcp.received += 5
    labels = {"listener": tcp.name, "transport": "tcp"}
    assert registry.get_sample_value("syslogsrc_listener_received_total", labels) == 15


def test_every_listener_stats_counter_is_exported() -> None:
    fields = set(ListenerStats("x").as_dict()) - {"name", "open_connections"}
    assert fields == set(LISTENER_COUNTERS)


class _Idle(TwistedSource):
    def listeners(self, reactor: object) -> list[object]:
        return []


def test_suspended_time_is_counted_at_suspend_and_resume(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(posting, "_monotonic", lambda: now[0])
    src = _Idle()
    registry = src.metrics_registry
    assert registry.get_sample_value("syslogsrc_source_suspended") == 0
    src.suspend()
    now[0] += 3
    assert registry.get_sample_value("syslogsrc_source_suspended") == 1
    assert registry.get_sample_value("syslogsrc_source_suspended_seconds_total") == 3
    src._resume()
    now[0] += 10  # not suspended: not counted
    src.suspend()
    src.suspend()  # a second suspend() does not restart the clock
    now[0] += 0.5
    src._resume()
    assert registry.get_sample_value("syslogsrc_source_suspended") == 0
    assert registry.get_sample_value("syslogsrc_source_suspended_seconds_total") == 3.5


def test_each_source_has_a_registry_of_its_own() -> None:
    a, b = _Idle(), _Idle()
    assert a.metrics_registry is not b.metrics_registry
    assert a.metrics_registry is a.metrics_registry
    assert REGISTRY.get_sample_value("syslogsrc_source_suspended") is None  # not the global one


@pytest.mark.parametrize("spec", ["udp:9100", "tcp:notaport", "bogus:1", "", "ssl:9100"])
def test_a_bad_metrics_option_fails_init_naming_it(spec: str, caplog) -> None:
    src = SyslogSource()
    assert src.init({"metrics": spec}) is False
    with pytest.raises(usage.UsageError, match=r"option metrics\("):
        Options().parseOptions(["--metrics", spec])


def test_the_metrics_option_is_off_by_default() -> None:
    src = SyslogSource()
    assert src.init({}) is True
    assert src.metrics_spec is None
    options = Options()
    options.parseOptions([])
    assert "metrics" not in options.source_options


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _send_load(tcp_port: int, udp_port: int) -> int:
    """N_TCP messages over TCP and N_UDP datagrams; returns the bytes sent (LFs too)."""
    lines = [b"<13>1 - host app - - - tcp message %d" % i for i in range(N_TCP)]
    with socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as s:
        s.sendall(b"".join(line + b"\n" for line in lines))
    grams = [b"<13>1 - host app - - - udp message %d" % i for i in range(N_UDP)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for gram in grams:
            u.sendto(gram, ("127.0.0.1", udp_port))
    return sum(len(line) + 1 for line in lines) + sum(map(len, grams))


def _host(tcp_port: int, udp_port: int, metrics_port: int) -> SourceHost:
    return SourceHost(
        SyslogSource,
        {
            "listen": f"tcp:{tcp_port}:interface=127.0.0.1 udp:{udp_port}:interface=127.0.0.1",
            "metrics": f"tcp:{metrics_port}:interface=127.0.0.1",
        },
    )


def _wait_scrape(port: int, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return scrape(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_source_host_serves_the_counters_of_a_known_load() -> None:
    tcp_port, udp_port, metrics_port = free_port(), free_port("udp"), free_port()
    tcp = f"tcp:{tcp_port}:interface=127.0.0.1"
    udp = f"udp:{udp_port}:interface=127.0.0.1"
    with _host(tcp_port, udp_port, metrics_port) as host:
        _wait_scrape(metrics_port)
        sent = _send_load(tcp_port, udp_port)
        assert host.wait_for(lambda: len(host.messages) == N_TCP + N_UDP)
        samples = scrape(metrics_port)
        stats = {s.name: s for s in host.source.listener_stats}
        for name, transport in ((tcp, "tcp"), (udp, "udp")):
            for field in LISTENER_COUNTERS:
                got = value(
                    samples, f"syslogsrc_listener_{field}_total", listener=name, transport=transport
                )
                assert got == getattr(stats[name], field), (name, field)
        assert (
            value(samples, "syslogsrc_listener_received_total", listener=tcp, transport="tcp")
            == N_TCP
        )
        assert (
            value(samples, "syslogsrc_listener_posted_total", listener=udp, transport="udp")
            == N_UDP
        )
        total_bytes = sum(
            value(samples, "syslogsrc_listener_bytes_total", listener=n, transport=t)
            for n, t in ((tcp, "tcp"), (udp, "udp"))
        )
        assert total_bytes == sent
        assert value(samples, "syslogsrc_source_suspended") == 0
    # stopped with the listeners
    with pytest.raises(urllib.error.URLError):
        scrape_text(metrics_port)


def test_the_endpoint_serves_after_reloads_and_descriptors_stay_flat() -> None:
    tcp_port, udp_port, metrics_port = free_port(), free_port("udp"), free_port()
    host = _host(tcp_port, udp_port, metrics_port)
    host.start()
    try:
        _wait_scrape(metrics_port)
        fds = []
        for _ in range(6):
            host.reload()
            samples = _wait_scrape(metrics_port)  # listening again (one attach starts all)
            _send_load(tcp_port, udp_port)
            # a keep-alive scraper connection too: closed by the stop
            conn = socket.create_connection(("127.0.0.1", metrics_port), timeout=5)
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 200")
            name = f"tcp:{tcp_port}:interface=127.0.0.1"
            assert host.wait_for(
                lambda name=name: (
                    value(
                        scrape(metrics_port),
                        "syslogsrc_listener_received_total",
                        listener=name,
                        transport="tcp",
                    )
                    == N_TCP
                )
            ), samples  # a new instance: its counters start at 0
            conn.close()
            gc.collect()
            fds.append(_fds())
        # a leak of one descriptor per reload would climb by 6; client sockets the test has
        # not yet collected make the count wobble by 2
        assert max(fds) - min(fds) <= 2, fds
    finally:
        host.close()


def test_only_metrics_is_served_and_gzip_when_asked() -> None:
    tcp_port, udp_port, metrics_port = free_port(), free_port("udp"), free_port()
    with _host(tcp_port, udp_port, metrics_port):
        _wait_scrape(metrics_port)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/", timeout=5)
        assert e.value.code == 404
        request = urllib.request.Request(
            f"http://127.0.0.1:{metrics_port}/metrics", headers={"Accept-Encoding": "gzip"}
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.headers["Content-Encoding"] == "gzip"
        request = urllib.request.Request(
            f"http://127.0.0.1:{metrics_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
            assert reply.read().endswith(b"# EOF\n")


def test_a_metrics_port_in_use_is_logged_and_the_listeners_serve(caplog) -> None:
    tcp_port, udp_port = free_port(), free_port("udp")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        with _host(tcp_port, udp_port, metrics_port) as host:
            assert host.wait_for(lambda: bool(host.source.listener_stats))
            assert host.wait_for(lambda: "cannot serve metrics" in caplog.text)
            _send_load(tcp_port, udp_port)
            assert host.wait_for(lambda: len(host.messages) == N_TCP + N_UDP)
            assert host.source.metrics_address is None


def test_promtool_check_metrics_passes_on_a_scrape() -> None:
    tcp_port, udp_port, metrics_port = free_port(), free_port("udp"), free_port()
    with _host(tcp_port, udp_port, metrics_port) as host:
        _wait_scrape(metrics_port)
        _send_load(tcp_port, udp_port)
        assert host.wait_for(lambda: len(host.messages) == N_TCP + N_UDP)
        text = scrape_text(metrics_port)
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result  # no lint
    assert parse(text)  # and prometheus_client's own parser reads it


def test_a_real_prometheus_scrapes_the_endpoint(tmp_path: Path) -> None:
    tcp_port, udp_port, metrics_port = free_port(), free_port("udp"), free_port()
    with _host(tcp_port, udp_port, metrics_port) as host:
        _wait_scrape(metrics_port)
        _send_load(tcp_port, udp_port)
        assert host.wait_for(lambda: len(host.messages) == N_TCP + N_UDP)
        server = PrometheusServer(tmp_path / "prometheus", f"127.0.0.1:{metrics_port}", free_port())
        try:
            tcp = f"tcp:{tcp_port}:interface=127.0.0.1"
            expr = f'syslogsrc_listener_received_total{{listener="{tcp}",transport="tcp"}}'
            result = server.wait_for(expr)
            assert len(result) == 1
            assert result[0]["metric"]["job"] == "syslogsrc"
            assert float(result[0]["value"][1]) == N_TCP
            result = server.wait_for('syslogsrc_listener_posted_total{transport="udp"}')
            assert float(result[0]["value"][1]) == N_UDP
            assert float(server.wait_for('up{job="syslogsrc"}')[0]["value"][1]) == 1
        finally:
            server.stop()
