"""SourceHost runs a LogSource the way syslog-ng does (syslogsrc/host.py), and its command line."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _sources import Idle

from syslogsrc.emulation import LogMessage
from syslogsrc.host import SourceHost, SourceInitError, main, normalise_options

CHECKOUT = str(Path(__file__).resolve().parent.parent)
WAIT = 10.0


# --------------------------------------------------------------------------------------------
# start-up failures name the class


def test_init_returning_false_is_an_error_naming_the_class():
    class Refuses(Idle):
        def init(self, options):
            return False

    with pytest.raises(SourceInitError, match=r"test_host\..*Refuses: init\(\) returned FALSE"):
        SourceHost(Refuses).start()


def test_init_raising_is_an_error_naming_the_class_and_the_exception(caplog):
    class Raises(Idle):
        def init(self, options):
            raise OSError("port in use")

    with pytest.raises(SourceInitError, match=r"Raises: init\(\) raised OSError\('port in use'\)"):
        SourceHost(Raises).start()
    assert "Raises.init()" in caplog.text  # logged with its traceback, as the daemon does


def test_constructor_raising_is_an_error():
    class Broken(Idle):
        def __init__(self):
            raise ValueError("bad")

    with pytest.raises(SourceInitError, match=r"Error instantiating Python driver class .*Broken"):
        SourceHost(Broken).start()


def test_class_must_be_a_logsource():
    class NotASource:
        def run(self):
            pass

        def request_exit(self):
            pass

    with pytest.raises(SourceInitError, match=r"not a subclass of syslogng\.LogSource"):
        SourceHost(NotASource).start()


def test_options_are_normalised_like_the_daemons():
    class Keeps(Idle):
        def init(self, options):
            self.options = options
            return True

    assert normalise_options({"listen-on": 1}) == {"listen_on": 1}
    with SourceHost(Keeps, {"max-connections": "5", "plain": "x"}) as host:
        assert host.source.options == {"max_connections": "5", "plain": "x"}


# --------------------------------------------------------------------------------------------
# run(): threads, failures, stopping


def test_init_in_the_callers_thread_run_in_its_own():
    class Threads(Idle):
        def init(self, options):
            self.init_thread = threading.get_ident()
            return True

        def run(self):
            self.run_thread = threading.get_ident()
            super().run()

        def request_exit(self):
            self.exit_thread = threading.get_ident()
            super().request_exit()

        def deinit(self):
            self.deinit_thread = threading.get_ident()

    host = SourceHost(Threads)
    host.start()
    source = host.source
    assert host.wait_for(lambda: hasattr(source, "run_thread"))
    host.close()
    me = threading.get_ident()
    assert source.init_thread == source.exit_thread == source.deinit_thread == me
    assert source.run_thread != me


def test_run_raising_is_logged_and_kept(caplog):
    # The daemon logs it and the source stays down until a reload; the host keeps the error.
    class Crashes(Idle):
        def run(self):
            raise KeyError("boom")

    host = SourceHost(Crashes)
    host.start()
    assert host.wait_for(lambda: not host.running)
    assert isinstance(host.run_error, KeyError)
    assert "Exception while calling" in caplog.text and "Crashes.run()" in caplog.text
    host.close()


def test_stop_gives_up_on_a_run_that_never_returns():
    release = threading.Event()

    class Deaf(Idle):
        def run(self):
            release.wait(WAIT)

        def request_exit(self):
            pass

    host = SourceHost(Deaf, stop_timeout=0.2)
    host.start()
    try:
        with pytest.raises(RuntimeError, match=r"did not return within 0\.2 s"):
            host.stop()
    finally:
        release.set()


def test_start_twice_is_refused():
    with SourceHost(Idle) as host, pytest.raises(RuntimeError, match="already started"):
        host.start()


def test_stop_delivers_everything_posted_then_deinits():
    class PostsThenStops(Idle):
        def run(self):
            for i in range(50):
                self.post_message(LogMessage(str(i)))
            super().run()

        def deinit(self):
            self.delivered_at_deinit = len(host.messages)

    host = SourceHost(PostsThenStops)
    host.start()
    source = host.source
    host.close()
    assert source.delivered_at_deinit == 50
    assert [m["MESSAGE"] for m in host.messages] == [str(i).encode() for i in range(50)]


# --------------------------------------------------------------------------------------------
# reload


class Generations(Idle):
    made: list = []
    deinited: list = []

    def __init__(self):
        super().__init__()
        Generations.made.append(self)

    def run(self):
        self.post_message(LogMessage(f"generation {len(Generations.made)}"))
        super().run()

    def deinit(self):
        Generations.deinited.append(self)


def test_reload_makes_a_new_instance_and_deinits_the_old():
    # syslog-ng reloads by stopping every source and instantiating the class again.
    Generations.made, Generations.deinited = [], []
    with SourceHost(Generations) as host:
        first = host.source
        assert host.wait_for(lambda: len(host.messages) == 1)
        host.reload()
        second = host.source
        assert second is not first
        assert Generations.deinited == [first]
        assert host.wait_for(lambda: len(host.messages) == 2)
        assert host.stats["reloads"] == 1
    assert Generations.deinited == [first, second]
    assert [m["MESSAGE"] for m in host.messages] == [b"generation 1", b"generation 2"]
    assert host.stats["posted"] == 2  # counted across generations


# --------------------------------------------------------------------------------------------
# the window and a slow output


class SlowOutput:
    def __init__(self, delay):
        self.delay = delay
        self.lines = []

    def write(self, msg):
        time.sleep(self.delay)
        self.lines.append(msg["MESSAGE"])

    def flush(self):
        pass

    def close(self):
        pass


class Polite(Idle):
    """Posts ``total`` messages, pausing between suspend() and wakeup() as it must."""

    total = 30

    def __init__(self):
        super().__init__()
        self.may_post = threading.Event()
        self.may_post.set()
        self.done = threading.Event()

    def suspend(self):
        self.may_post.clear()

    def wakeup(self):
        self.may_post.set()

    def run(self):
        for i in range(self.total):
            assert self.may_post.wait(WAIT)
            self.post_message(LogMessage(str(i)))
        self.done.set()
        super().run()


def test_slow_output_pushes_back_through_the_window():
    output = SlowOutput(0.005)
    with SourceHost(Polite, log_iw_size=4, output=output) as host:
        assert host.source.done.wait(WAIT)
        stats = host.stats
    assert stats["suspends"] >= 5  # 30 posts through a window of 4
    assert stats["dropped"] == 0
    assert output.lines == [str(i).encode() for i in range(30)]


def test_blocking_source_is_slowed_by_the_output():
    class Eager(Idle):
        def run(self):
            start = time.monotonic()
            for i in range(20):
                self.post_message(LogMessage(str(i)))
            self.took = time.monotonic() - start
            super().run()

    output = SlowOutput(0.02)
    with SourceHost(Eager, log_iw_size=2, output=output) as host:
        assert host.wait_for(lambda: hasattr(host.source, "took"))
        # 20 posts through 2 slots of a 20 ms output: at least ~18 writes were waited for
        assert host.source.took >= 0.3
    assert len(output.lines) == 20


def test_stats():
    with SourceHost(Polite, log_iw_size=50) as host:
        assert host.source.done.wait(WAIT)
        assert host.wait_for(lambda: host.stats["acked"] == 30)
        stats = host.stats
    assert stats == {
        "posted": 30,
        "dropped": 0,
        "acked": 30,
        "batches": 30,
        "suspends": 0,
        "window_free": 50,
        "window_size": 50,
        "reloads": 0,
    }
    assert "window_free" not in host.stats  # stopped: no window


def test_a_broken_output_does_not_stall_the_source(caplog):
    class Broken(SlowOutput):
        def write(self, msg):
            raise OSError("disk full")

    with SourceHost(Polite, log_iw_size=2, output=Broken(0)) as host:
        assert host.source.done.wait(WAIT)
    assert "output failed" in caplog.text


def test_log_iw_size_must_be_positive():
    with pytest.raises(ValueError, match="log-iw-size"):
        SourceHost(Idle, log_iw_size=0).start()


# --------------------------------------------------------------------------------------------
# the command line (a real process: signals, exit codes, stdout)


def _cli(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=CHECKOUT)
    return subprocess.Popen(
        [sys.executable, "-m", "syslogsrc.host", *args],
        cwd=CHECKOUT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def _read_lines(proc, n, timeout=WAIT):
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while len(lines) < n and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += done
    return lines


def _finish(proc, timeout=WAIT):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"syslogsrc.host did not stop: {err.decode()}")
    return proc.returncode, out, err.decode()


def test_cli_exits_1_naming_the_class_when_init_fails():
    rc, _, err = _finish(_cli("tests.agreement_sources.FailingInit"))
    assert rc == 1
    assert "tests.agreement_sources.FailingInit" in err and "init() returned FALSE" in err


def test_cli_unknown_class():
    rc, _, err = _finish(_cli("tests.agreement_sources.NoSuchSource"))
    assert rc == 1 and "cannot load tests.agreement_sources.NoSuchSource" in err


def test_cli_writes_json_lines_and_stops_on_sigterm():
    proc = _cli("tests.agreement_sources.Ticker", "-o", "count=3")
    try:
        lines = _read_lines(proc, 3)
        assert [json.loads(line)["MESSAGE"] for line in lines] == ["tick 0", "tick 1", "tick 2"]
        assert json.loads(lines[1])["N"] == "1"
    finally:
        proc.send_signal(signal.SIGTERM)
    rc, rest, err = _finish(proc)
    assert rc == 0, err
    assert rest == b""


def test_cli_reloads_on_sighup():
    proc = _cli("tests.agreement_sources.Ticker", "-o", "count=1")
    try:
        assert len(_read_lines(proc, 1)) == 1
        proc.send_signal(signal.SIGHUP)
        assert [json.loads(x)["MESSAGE"] for x in _read_lines(proc, 1)] == ["tick 0"]
    finally:
        proc.send_signal(signal.SIGTERM)
    rc, _, err = _finish(proc)
    assert rc == 0 and "reloading" in err


def test_cli_text_output_to_a_file(tmp_path):
    out = tmp_path / "out.log"
    proc = _cli(
        "tests.agreement_sources.Ticker",
        "--option=count=2",
        "--output",
        str(out),
        "--output-format",
        "text",
    )
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    rc, _, err = _finish(proc)
    assert rc == 0, err
    lines = out.read_text().splitlines()
    # syslog-ng's layout pads a one-digit day with a space ("Dec  2"): never split on spaces
    layout = re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+) (.*)")
    matches = [layout.fullmatch(line) for line in lines]
    assert all(matches), lines
    assert [m.group(2) for m in matches] == ["tick 0", "tick 1"]


def test_main_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["tests.agreement_sources.Ticker", "--log-iw-size", "0"])
    with pytest.raises(SystemExit):
        main(["tests.agreement_sources.Ticker", "-o", "no-equals-sign"])
    with pytest.raises(SystemExit, match=r"not module\.Class"):
        main(["Ticker"])


@pytest.fixture(autouse=True)
def _quiet_logging():
    # main() calls logging.basicConfig; keep the test process's root logger as it was
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
