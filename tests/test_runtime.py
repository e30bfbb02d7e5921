"""syslogsrc.runtime: the syslogng names and the feature table, outside the daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from syslogsrc import emulation, runtime
from syslogsrc.runtime import FEATURES, Features, detect_features

CHECKOUT = str(Path(__file__).resolve().parent.parent)


def test_outside_the_daemon_the_names_are_the_emulations():
    assert runtime.IN_DAEMON is False
    for name in (
        "LogSource",
        "LogMessage",
        "Logger",
        "Persist",
        "InstantAckTracker",
        "ConsecutiveAckTracker",
        "BatchedAckTracker",
    ):
        assert getattr(runtime, name) is getattr(emulation, name)


def test_features_outside_the_daemon_are_the_emulations_4x_set():
    assert FEATURES == Features(
        in_daemon=False,
        close_batch=True,
        set_transport_name=True,
        set_source_ipaddress=True,
        set_recvd_rawmsg_size=True,
        get_pri=True,
        typed_values=True,
        get_as_str=True,
        stale_receive_time=False,
    )
    assert FEATURES.describe().startswith("emulation: close_batch, set_transport_name")


class Source338:
    """What 3.38.1's C LogSource offers."""

    def post_message(self, msg): ...


class Message338:
    def set_pri(self, pri): ...

    def set_timestamp(self, ts): ...


class Source48(Source338):
    def close_batch(self): ...

    def set_transport_name(self, name): ...


class Message48(Message338):
    def get_pri(self): ...

    def get(self, key, default=None): ...

    def get_as_str(self, key): ...

    def set_source_ipaddress(self, ip, port=0): ...


def test_detect_features_of_a_338_daemon():
    f = detect_features(Source338, Message338, in_daemon=True)
    assert f == Features(
        in_daemon=True,
        close_batch=False,
        set_transport_name=False,
        set_source_ipaddress=False,
        set_recvd_rawmsg_size=False,
        get_pri=False,
        typed_values=False,
        get_as_str=False,
        stale_receive_time=True,  # any daemon: a LogMessage() per batch refreshes it
    )
    assert f.describe() == "syslog-ng: stale_receive_time"


def test_detect_features_of_a_48_daemon():
    f = detect_features(Source48, Message48, in_daemon=True)
    assert f.close_batch and f.set_transport_name and f.set_source_ipaddress
    assert f.get_pri and f.typed_values and f.get_as_str
    assert not f.set_recvd_rawmsg_size  # sng 4.9 / axo 4.10
    assert f.stale_receive_time  # 4.8.1 too (tests/test_integration_fields.py)


def test_stale_receive_time_only_inside_a_daemon():
    assert not detect_features(Source338, Message338, in_daemon=False).stale_receive_time


def test_detect_features_defaults_to_this_process():
    assert detect_features() == FEATURES


def test_inside_the_daemon_detection(monkeypatch):
    # In syslog-ng, _syslogng is in sys.modules with __spec__ None (find_spec raises
    # ValueError for it in 3.38.1): it must count as "inside".
    fake = types.ModuleType("_syslogng")
    fake.__spec__ = None
    monkeypatch.setitem(sys.modules, "_syslogng", fake)
    assert runtime._inside_syslog_ng() is True
    monkeypatch.delitem(sys.modules, "_syslogng")
    assert runtime._inside_syslog_ng() is False


def test_inside_the_daemon_the_names_come_from_syslogng():
    # A fresh interpreter with a fake daemon (reloading runtime here would leave other modules
    # holding the old FEATURES): every name must then be the syslogng package's.
    code = textwrap.dedent(
        """
        import sys, types
        c = types.ModuleType("_syslogng")
        c.__spec__ = None
        pkg = types.ModuleType("syslogng")
        names = ("BatchedAckTracker", "ConsecutiveAckTracker", "InstantAckTracker", "Logger",
                 "LogMessage", "LogSource", "Persist")
        for name in names:
            setattr(pkg, name, type(name, (), {}))
        sys.modules.update(_syslogng=c, syslogng=pkg)
        from syslogsrc import runtime
        assert runtime.IN_DAEMON is True
        assert all(getattr(runtime, n) is getattr(pkg, n) for n in names)
        assert runtime.FEATURES.in_daemon and runtime.FEATURES.stale_receive_time
        assert not runtime.FEATURES.close_batch
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=CHECKOUT),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout == "ok\n", out.stderr


@pytest.mark.parametrize("field", ["close_batch", "typed_values", "in_daemon"])
def test_features_are_frozen(field):
    with pytest.raises(AttributeError):
        setattr(FEATURES, field, not getattr(FEATURES, field))
