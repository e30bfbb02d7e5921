"""Helpers of the metrics tests: scrape an endpoint, and the real Prometheus tools.

- :func:`scrape`: GET ``/metrics`` and parse it with ``prometheus_client``'s parser into
  ``{(name, frozenset(labels.items())): value}``; :func:`value` reads one sample of it.
- :func:`promtool` / :func:`prometheus_binary`: the path of Debian's ``promtool`` / ``prometheus``
  (``apt-get install prometheus``), or a skip saying so; with SYSLOGSRC_REQUIRE_SYSLOG_NG=1 (as
  .ci/run sets) a missing tool fails the test instead, as a missing daemon does.
- :class:`PrometheusServer`: a real ``prometheus`` on loopback with a generated configuration and
  a data directory of its own, scraping one target every second; :meth:`PrometheusServer.query`
  asks its HTTP API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["PrometheusServer", "prometheus_binary", "promtool", "scrape", "scrape_text", "value"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(port: int, host: str = "127.0.0.1", timeout: float = 10) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        return reply.read().decode()


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    return parse(scrape_text(port, host))


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if key not in samples:
        names = sorted({n for n, _ in samples})
        raise AssertionError(f"no sample {name}{labels}; names: {names}")
    return samples[key]


def _required() -> bool:
    return os.environ.get("SYSLOGSRC_REQUIRE_SYSLOG_NG", "") not in ("", "0")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"no {name}: apt-get install prometheus"
        if _required():
            pytest.fail(f"SYSLOGSRC_REQUIRE_SYSLOG_NG is set but: {reason}")
        pytest.skip(reason)
    return path


def promtool() -> str:
    return _tool("promtool")


def prometheus_binary() -> str:
    return _tool("prometheus")


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on ``text`` (its lint: names, help, types, _total suffixes)."""
    return subprocess.run(
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class PrometheusServer:
    """``prometheus`` scraping ``target`` (host:port) every second; stop with :meth:`stop`."""

    def __init__(self, workdir: Path, target: str, port: int) -> None:
        self.port = port
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: syslogsrc\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--web.console.templates=/nonexistent",
                    "--web.console.libraries=/nonexistent",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as reply:
            return json.load(reply)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (``data.result``)."""
        reply = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns a sample (the first scrape has been stored)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                result = self.query(expr)
            except OSError:
                result = []
            if result:
                return result
            if time.monotonic() > deadline:
                targets = self._get("/api/v1/targets")
                raise AssertionError(f"{expr} had no sample within {timeout}s; {targets}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
