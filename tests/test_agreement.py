"""The emulation agrees with the real daemon: every scenario of ``tests/agreement_sources.py``
runs in each syslog-ng on this machine and in ``SourceHost``, and both must observe the same.

In the daemon the scenario's messages go to a file destination (a JSON object per line) and, in
a ``flags(flow-control)`` log path, to ``GateDestination``, whose ``send()`` waits at the gate:
that stalls acknowledgements, so the source's ``log-iw-size`` window really empties. The file
destination sits in a log path of its own without flow control, so it acknowledges at once and
the window depends on the gate alone. In the emulation ``GateOutput`` plays both parts.

What 3.38.1 lacks (close_batch, set_transport_name, typed values, ...) is skipped there with the
reason; docs/emulation.md lists the results per daemon version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import pytest
from daemons import DaemonError, DaemonStartError

CHECKOUT = str(Path(__file__).resolve().parent.parent)
if CHECKOUT not in sys.path:  # the daemon imports tests.agreement_sources: so must we
    sys.path.insert(0, CHECKOUT)

from syslogsrc.emulation import MISSING_BOOKMARK_ERROR  # noqa: E402
from syslogsrc.host import SourceHost  # noqa: E402
from syslogsrc.testing import wait_until  # noqa: E402
from tests.agreement_sources import (  # noqa: E402
    FILE_TEMPLATE,
    RESULT_PREFIX,
    SCENARIOS,
    AckWithoutBookmark,
    GateOutput,
)

DROP_TEXT = "Incorrectly suspended source, dropping message"
#: how long a scenario may take to post its result
RESULT_TIMEOUT = 20.0
#: scenarios that report in a file at exit (nothing can be posted then), and the time they get
#: to fill their window before the test stops them
REPORTING = ("BlockingExit", "SuspendedExit")
SETTLE = 1.0

CONFIG = """\
{preamble}source s_agree {{
    python(class("tests.agreement_sources.{name}")
           options("gate" "@STATE@/gate" "report" "@STATE@/report.json")
           log-iw-size({window}) {source_options});
}};
destination d_gate {{
    python(class("tests.agreement_sources.GateDestination") options("gate" "@STATE@/gate"));
}};
destination d_file {{ file("@STATE@/out.json" template("{template}")); }};
log {{ source(s_agree); destination(d_file); }};
log {{ source(s_agree); destination(d_gate); flags(flow-control); }};
"""


class Run:
    """What one run of a scenario showed: its observations, the delivered ``fill`` lines, and
    whether the drop error was logged."""

    def __init__(self, obs: dict, lines: list[dict], drop_logged: bool, where: str) -> None:
        self.obs = obs
        self.fills = [_clean(x) for x in lines if x.get("MESSAGE", "").startswith("fill")]
        self.drop_logged = drop_logged
        self.where = where

    def __repr__(self) -> str:
        return f"<{self.where}: {self.obs} fills={self.fills} drop_logged={self.drop_logged}>"


def _clean(line: dict) -> dict:
    # 3.38 writes an unset $TRANSPORT as "", 4.8 as null: both mean "not set"
    out = {k: str(v) for k, v in line.items() if v not in ("", None)}
    if not out.get("MESSAGE", "").startswith("fill stamp"):
        out.pop("ISODATE", None)  # the receive time: differs from run to run
    return out


def _result(lines: list[dict]) -> dict | None:
    for line in lines:
        message = line.get("MESSAGE", "")
        if message.startswith(RESULT_PREFIX):
            return json.loads(message[len(RESULT_PREFIX) :])
    return None


def _read_lines(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# the two sides


def run_in_daemon(syslog_ng, name: str) -> Run:
    cls = SCENARIOS[name]
    config = CONFIG.format(
        name=name,
        window=cls.window or 100,
        template=FILE_TEMPLATE,
        preamble=PREAMBLE.get(name, ""),
        source_options=f'persist-name("{PERSIST_NAME[name]}")' if name in PERSIST_NAME else "",
    )
    daemon = syslog_ng(config, env=dict(SCENARIO_ENV.get(name, {})))
    out = daemon.state_dir / "out.json"
    report = daemon.state_dir / "report.json"
    try:
        if name in REPORTING:
            time.sleep(SETTLE)
            daemon.stop(timeout=RESULT_TIMEOUT)
            obs = json.loads(report.read_text()) if report.exists() else None
        else:
            wait_until(lambda: _result(_read_lines(out)) is not None, RESULT_TIMEOUT)
            obs = _result(_read_lines(out))
            daemon.stop(timeout=RESULT_TIMEOUT)
    finally:
        stderr = daemon.stderr()
    assert obs is not None, f"{name} reported nothing in {syslog_ng.name}:\n{stderr}"
    return Run(obs, _read_lines(out), DROP_TEXT in stderr, syslog_ng.name)


#: config text before the source: 3.38.1 aborts on Persist() unless the config has a python {}
#: block (test_persist_needs_a_python_block_in_3x)
PYTHON_BLOCK = "python {\nimport sys\n};\n"
PREAMBLE = {"PersistRules": PYTHON_BLOCK}
#: the source's persist-name() (SourceHost's persist_name)
PERSIST_NAME = {"NamedLifecycle": "agree-named"}

#: environment a scenario runs under, on both sides
SCENARIO_ENV = {"Timestamps": {"TZ": "Asia/Kolkata"}}


@contextlib.contextmanager
def _environment(values: dict):
    """Set environment variables (and the C library's idea of the time zone) for a while."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    time.tzset()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        time.tzset()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_emulated: dict[str, Run] = {}


def run_in_emulation(name: str, tmp_path_factory) -> Run:
    """Each scenario once per session: the emulation is the same for every daemon."""
    if name in _emulated:
        return _emulated[name]
    cls = SCENARIOS[name]
    where = tmp_path_factory.mktemp(f"emulated-{name}")
    report = where / "report.json"
    output = GateOutput(str(where / "gate"))
    collect = _Collect()
    logger = logging.getLogger("syslogng")
    host = SourceHost(
        cls,
        {"gate": str(where / "gate"), "report": str(report)},
        log_iw_size=cls.window or 100,
        output=output,
        stop_timeout=RESULT_TIMEOUT,
        persist_name=PERSIST_NAME.get(name),
    )
    logger.addHandler(collect)
    try:
        with _environment(SCENARIO_ENV.get(name, {})):
            host.start()
            try:
                if name in REPORTING:
                    time.sleep(SETTLE)
                else:
                    wait_until(lambda: _result(output.lines) is not None, RESULT_TIMEOUT)
            finally:
                host.close()
    finally:
        logger.removeHandler(collect)
    obs = json.loads(report.read_text()) if name in REPORTING else _result(output.lines)
    assert obs is not None, f"{name} reported nothing in the emulation"
    run = Run(obs, output.lines, DROP_TEXT in collect.messages, "emulation")
    _emulated[name] = run
    return run


# --------------------------------------------------------------------------------------------
# the scenarios every daemon has

#: what the emulation must show by itself, whatever the daemons do (so a broken daemon
#: fixture cannot make both sides agree on nonsense)
EXPECTED = {
    "ThreadCheck": {
        "from_init": ["RuntimeError", "post_message must be called from main thread"],
        "from_thread": ["RuntimeError", "post_message must be called from main thread"],
        "from_run": None,
        "not_a_message": "TypeError",
        "not_a_message_text": "LogMessage expected in the first parameter",
    },
    "Lifecycle": {
        "init_in_main_thread": True,
        "run_in_other_thread": True,
        "parse_options_in_init": True,  # None inside init()
        "parse_options_in_run": True,
        "persist_name": "python-source(tests.agreement_sources.Lifecycle)",
        "option_types": ["str"],
    },
    "NamedLifecycle": {
        "init_in_main_thread": True,
        "run_in_other_thread": True,
        "parse_options_in_init": True,
        "parse_options_in_run": True,
        "persist_name": "python-source.agree-named",
        "option_types": ["str"],
    },
    "Blocking": {"blocked": [False, False, True], "blocked_again": True},
    "BlockingExit": {
        "blocked": True,
        "returned_after_exit": True,
        "returned_soon_after_exit": True,
        "post_after_exit": None,
    },
    "Suspending": {
        "events": ["suspend", "wakeup"],
        "suspended_in_post": [2],
        "suspend_in_run_thread": True,
        "wakeup_thread": ["ack"],
        "woken_before_ack": False,
        "post_while_suspended": None,
    },
    "WakeupThreshold": {"suspended": True, "acks_before_wakeup": 1},
    "FastPath": {"stuck": 0},
    "InstantAcks": {"acked": ["b0", "b1", "b2"], "ack_in_main_thread": False},
    "ConsecutiveAcks": {
        "acked": ["b0", "b1", "b2"],
        "acked_in_order": ["b0", "b1", "b2"],
        "ack_in_main_thread": False,
    },
}

COMMON = [
    "ThreadCheck",
    "Lifecycle",
    "NamedLifecycle",
    "Blocking",
    "BlockingExit",
    "Suspending",
    "WakeupThreshold",
    "FastPath",
    "SuspendedExit",
    "InstantAcks",
    "ConsecutiveAcks",
    "PersistRules",
    "ValuesAsBytes",
    "Hostnames",
    "Timestamps",
]
#: scenarios whose delivered messages depend on thread timing (stale wakeups drop a post)
RACY = ("FastPath",)
#: 4.x rules: each scenario reports "supported"; a daemon without the feature is skipped
NEWER = ["Batches", "Transport", "MessageApi4"]


def test_message_without_bookmark_crashes_the_daemon(syslog_ng, tmp_path):
    """With an ack tracker every message needs a bookmark: the daemon dies of a signal on one
    without (3.38.1 and 4.8.1: SIGSEGV), the emulation raises instead."""
    config = CONFIG.format(
        name="AckWithoutBookmark",
        window=100,
        template=FILE_TEMPLATE,
        preamble="",
        source_options="",
    )
    daemon = syslog_ng(config)
    assert wait_until(lambda: not daemon.alive(), RESULT_TIMEOUT), "the daemon survived"
    assert daemon.returncode < 0, daemon.stderr()  # killed by a signal
    with SourceHost(AckWithoutBookmark, {"gate": str(tmp_path / "gate"), "report": ""}) as host:
        assert host.wait_for(lambda: host.messages)
    obs = _result([{"MESSAGE": m.get_as_str("MESSAGE")} for m in host.messages])
    assert obs == {"post": ["RuntimeError", MISSING_BOOKMARK_ERROR]}


def test_scenarios_are_all_run():
    assert sorted(COMMON + NEWER) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_emulation_alone(name, tmp_path_factory):
    run = run_in_emulation(name, tmp_path_factory)
    assert run.obs == EXPECTED[name]
    messages = [f["MESSAGE"] for f in run.fills]
    # a post while suspended (Suspending) or after exit (BlockingExit) is dropped and logged
    if name not in RACY:
        assert run.drop_logged == (name in ("Suspending", "BlockingExit", "SuspendedExit"))
    assert "fill while suspended" not in messages
    assert "fill after exit" not in messages
    if name == "ThreadCheck":
        assert messages == ["fill from run"]


#: scenarios whose rule the emulation copies from 4.x only: (first version, why older differ)
FROM_4X = {
    "Timestamps": (
        (4, 0),
        "3.x reads a datetime's wall clock as UTC (test_timestamps_differ_in_3x shows how)",
    ),
    "SuspendedExit": (
        (4, 0),
        "3.x does not wake a suspended source on exit (test_no_wakeup_on_exit_in_3x)",
    ),
}


#: Scenarios in which the daemon itself was seen to hang at random: (daemon name, scenario).
#: host-3.38 with a ConsecutiveAckTracker: about 1 full CI run in 10 under load, the scenario's
#: run() thread posts nothing for 20 s and the daemon then ignores SIGTERM; 90 runs of the test
#: alone (half of them with both cores busy) did not reproduce it. The scenario uses the daemon's
#: API only (no syslogsrc code): one retry, and the first hang's thread backtraces (gdb) go to
#: the test's warnings so the cause can be found.
DAEMON_HANGS = {("host-3.38", "ConsecutiveAcks")}


@pytest.mark.parametrize("name", COMMON + NEWER)
def test_agreement(name, syslog_ng, tmp_path_factory):
    if name in FROM_4X and syslog_ng.version < FROM_4X[name][0]:
        pytest.skip(f"{syslog_ng.name}: {FROM_4X[name][1]}")
    try:
        daemon = run_in_daemon(syslog_ng, name)
    except DaemonError as exc:
        if (syslog_ng.name, name) not in DAEMON_HANGS:
            raise
        warnings.warn(f"{syslog_ng.name} hung in {name}; retried once: {exc}", stacklevel=1)
        daemon = run_in_daemon(syslog_ng, name)
    if daemon.obs.get("supported") is False:
        pytest.skip(f"{syslog_ng.name} ({syslog_ng.daemon.full_version}) has no {name} API")
    emulated = run_in_emulation(name, tmp_path_factory)
    assert "scenario_error" not in daemon.obs, daemon
    assert emulated.obs == daemon.obs
    if name in RACY:
        return  # which posts a stale wakeup costs differs from run to run, on both sides
    # the same messages arrived, with the same TRANSPORT / SOURCEIP / PRI, and nothing else
    assert emulated.fills == daemon.fills
    assert emulated.drop_logged == daemon.drop_logged


#: $ISODATE of the Timestamps scenario's messages under TZ=Asia/Kolkata, as 3.38.1 wrote them
#: (the digits of the wall clock read as UTC, then shown in the datetime's offset or, for a naive
#: one, in local time) and as the emulation (4.x) writes them
ISODATE_3X = {
    "naive": "2024-01-15T17:30:00+05:30",
    "utc": "2024-01-15T12:00:00+00:00",
    "plus2": "2024-01-15T14:00:00+02:00",
    "minus5": "2024-01-16T07:00:00+19:00",
}
ISODATE_4X = {
    "naive": "2024-01-15T12:00:00+05:30",
    "utc": "2024-01-15T12:00:00+00:00",
    "plus2": "2024-01-15T12:00:00+02:00",
    "minus5": "2024-01-15T12:00:00+19:00",  # the days of the offset are lost in 4.x too
}


def _stamps(run: Run) -> dict:
    return {f["MESSAGE"].rsplit(" ", 1)[1]: f["ISODATE"] for f in run.fills}


def test_timestamps_differ_in_3x(syslog_ng, tmp_path_factory):
    """What a 3.x daemon does with set_timestamp(), pinned so that the docs stay true."""
    if syslog_ng.version >= (4, 0):
        pytest.skip(f"{syslog_ng.name} reads timestamps as 4.x does (test_agreement)")
    assert _stamps(run_in_daemon(syslog_ng, "Timestamps")) == ISODATE_3X
    assert _stamps(run_in_emulation("Timestamps", tmp_path_factory)) == ISODATE_4X


def test_no_wakeup_on_exit_in_3x(syslog_ng, tmp_path_factory):
    """3.x asks a suspended source to exit without waking it; 4.x (and the emulation) also
    calls wakeup() from the main thread, after request_exit()."""
    if syslog_ng.version >= (4, 0):
        pytest.skip(f"{syslog_ng.name} wakes a suspended source on exit (test_agreement)")
    assert run_in_daemon(syslog_ng, "SuspendedExit").obs == {
        "events": ["suspend", "request_exit"],
        "suspended": True,
        "threads": ["run", "main"],
    }
    assert run_in_emulation("SuspendedExit", tmp_path_factory).obs == {
        "events": ["suspend", "request_exit", "wakeup"],
        "suspended": True,
        "threads": ["run", "main", "main"],
    }


def test_persist_needs_a_python_block_in_3x(syslog_ng):
    """3.38.1 aborts on the first Persist() (``_syslogng`` has no ``persist_state``) when the
    configuration has no ``python {}`` block; 4.8.1 does not need one."""
    config = CONFIG.format(
        name="PersistRules", window=100, template=FILE_TEMPLATE, preamble="", source_options=""
    )
    daemon = syslog_ng(config) if syslog_ng.version >= (4, 0) else None
    if daemon is None:
        with pytest.raises(DaemonStartError, match="persist_state"):
            syslog_ng(config)
        return
    out = daemon.state_dir / "out.json"
    assert wait_until(lambda: _result(_read_lines(out)) is not None, RESULT_TIMEOUT)
    assert _result(_read_lines(out))["persist_name"] == "python-source.agreement"
