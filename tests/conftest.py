"""Shared fixtures. ``syslog_ng`` runs tests against every real syslog-ng daemon on this machine.

Usage::

    def test_something(syslog_ng):                  # once per daemon: host-3.38, chroot-4.8, ...
        port = free_port()
        d = syslog_ng(CONFIG.replace("PORT", str(port)), wait_ports=[port])
        ...                                          # d is a daemons.RunningDaemon
        assert syslog_ng.daemon.version >= (3, 38)

Tests that use it get the ``daemon`` marker (``-m "not daemon"`` leaves them out). Without any
daemon they are skipped; with SYSLOGSRC_REQUIRE_SYSLOG_NG=1 a missing host or chroot daemon fails
them instead. See docs/testing.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:  # so `import daemons` works whether or not tests/ is a package
    sys.path.insert(0, _TESTS)

import daemons  # noqa: E402

_STARTED = pytest.StashKey[list]()
_INSTALL_HINT = (
    "no syslog-ng: apt-get install syslog-ng-core syslog-ng-mod-python "
    "(and/or `tests/tools/syslog-ng4-chroot setup` as root)"
)


def _require_daemons() -> bool:
    return os.environ.get("SYSLOGSRC_REQUIRE_SYSLOG_NG", "") not in ("", "0")


class _Missing:
    """Parameter standing for a daemon that should be there but is not."""

    def __init__(self, id_: str, reason: str):
        self.id = id_
        self.reason = reason


class DaemonFactory:
    """What the ``syslog_ng`` fixture yields: call it to start a daemon of one kind."""

    def __init__(self, daemon: daemons.Daemon, workdir: Path, started: list):
        self.daemon = daemon
        self.workdir = workdir
        self.started = started

    @property
    def name(self) -> str:
        return self.daemon.name

    @property
    def version(self) -> tuple[int, int]:
        return self.daemon.version

    def __call__(self, config_text: str, **kwargs) -> daemons.RunningDaemon:
        kwargs.setdefault("workdir", self.workdir)
        running = self.daemon.spawn(config_text, **kwargs)
        self.started.append(running)
        return running


def pytest_configure(config):
    declared = " ".join(config.getini("markers"))
    if "daemon:" not in declared:
        config.addinivalue_line("markers", "daemon: runs the real syslog-ng daemon")
    config.addinivalue_line(
        "markers",
        "syslog_ng_version(major, minor): skip the syslog_ng fixture's daemons older than this",
    )


def pytest_generate_tests(metafunc):
    if "syslog_ng" not in metafunc.fixturenames:
        return
    found, missing = daemons.probe_daemons()
    params: list = [pytest.param(d, id=d.name) for d in found]
    if _require_daemons():
        params += [
            pytest.param(_Missing(f"{k}-missing", r), id=f"{k}-missing") for k, r in missing.items()
        ]
    elif not found:
        reason = "; ".join([_INSTALL_HINT, *missing.values()])
        params = [pytest.param(_Missing("no-syslog-ng", reason), id="no-syslog-ng")]
    metafunc.parametrize("syslog_ng", params, indirect=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if "syslog_ng" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.daemon)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for running in item.stash.get(_STARTED, []):
            report.sections.append(
                (f"syslog-ng {running.name} (pid {running.pid}) stderr", running.stderr())
            )


@pytest.fixture
def syslog_ng(request, tmp_path):
    """A factory starting real syslog-ng daemons of one kind (parametrised over all kinds)."""
    daemon = getattr(request, "param", None)
    if daemon is None:
        pytest.fail("syslog_ng is parametrised by conftest.pytest_generate_tests")
    if isinstance(daemon, _Missing):
        if _require_daemons():
            pytest.fail(f"SYSLOGSRC_REQUIRE_SYSLOG_NG is set but: {daemon.reason}")
        pytest.skip(daemon.reason)
    marker = request.node.get_closest_marker("syslog_ng_version")
    if marker is not None and daemon.version < tuple(marker.args):
        wanted = ".".join(map(str, marker.args))
        pytest.skip(f"needs syslog-ng >= {wanted}; {daemon.name} is {daemon.full_version}")

    started: list[daemons.RunningDaemon] = []
    request.node.stash[_STARTED] = started
    yield DaemonFactory(daemon, tmp_path, started)

    errors = []
    for running in started:
        try:
            running.close()
        except daemons.DaemonError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n\n".join(errors))
