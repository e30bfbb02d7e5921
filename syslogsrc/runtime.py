"""The ``syslogng`` names, wherever the code runs.

Inside syslog-ng the C module ``_syslogng`` exists and the names come from the daemon's own
``syslogng`` package; anywhere else they come from :mod:`syslogsrc.emulation`. The rest of the
code imports ``LogSource``, ``LogMessage``, ... from here and asks :data:`FEATURES` what the
running version can do, instead of guessing from a version number.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import attrs

__all__ = [
    "FEATURES",
    "BatchedAckTracker",
    "ConsecutiveAckTracker",
    "Features",
    "InstantAckTracker",
    "LogMessage",
    "LogSource",
    "Logger",
    "Persist",
    "detect_features",
]


def _inside_syslog_ng() -> bool:
    # ``_syslogng`` is compiled into the daemon's python module and importable nowhere else;
    # 4.x also ships a ``syslogng`` package with pure-Python fakes, so that name proves nothing.
    # The daemon puts it into sys.modules before any user code runs, with ``__spec__`` None, and
    # find_spec() raises ValueError for such a module (seen in 3.38.1): look there first.
    if "_syslogng" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("_syslogng") is not None
    except (ImportError, ValueError):
        return False


if _inside_syslog_ng():  # pragma: no cover - exercised by the daemon tests
    from syslogng import (  # type: ignore[import-not-found]
        BatchedAckTracker,
        ConsecutiveAckTracker,
        InstantAckTracker,
        Logger,
        LogMessage,
        LogSource,
        Persist,
    )

    IN_DAEMON = True
else:
    from syslogsrc.emulation import (
        BatchedAckTracker,
        ConsecutiveAckTracker,
        InstantAckTracker,
        Logger,
        LogMessage,
        LogSource,
        Persist,
    )

    IN_DAEMON = False


@attrs.frozen
class Features:
    """What the running ``syslogng`` API offers (§0 of the API reference)."""

    in_daemon: bool
    #: ``LogSource.close_batch()`` and ``auto_close_batches`` (sng 4.1)
    close_batch: bool
    #: ``LogSource.set_transport_name()`` (sng 4.5)
    set_transport_name: bool
    #: ``LogMessage.set_source_ipaddress()`` (sng 4.8)
    set_source_ipaddress: bool
    #: ``LogMessage.set_recvd_rawmsg_size()`` (sng 4.9 / axo 4.10)
    set_recvd_rawmsg_size: bool
    #: ``LogMessage.get_pri()`` / ``get_timestamp()`` (sng 4.0)
    get_pri: bool
    #: typed name-value pairs (int, float, bool, list, datetime) (sng 4.0)
    typed_values: bool
    #: ``LogMessage.get()`` / ``get_as_str()`` (sng 4.2)
    get_as_str: bool
    #: A Python source's thread never refreshes the daemon's cached clock: RECVD, and the stamp
    #: of a message made or parsed without one, stay at their first value (measured in 3.38.1
    #: and 4.8.1: three stampless messages 2 s apart, one stamp) unless the source makes a
    #: ``LogMessage()``, which invalidates it (``_daemon_time.refresh_clock``, once a batch).
    stale_receive_time: bool

    def describe(self) -> str:
        have = [
            f.name for f in attrs.fields(Features) if f.type == "bool" and getattr(self, f.name)
        ]
        where = "syslog-ng" if self.in_daemon else "emulation"
        return f"{where}: " + ", ".join(n for n in have if n != "in_daemon")


def detect_features(
    log_source: Any = None, log_message: Any = None, in_daemon: bool | None = None
) -> Features:
    """Compute the feature table of the given ``LogSource``/``LogMessage`` classes (default:
    the ones this process uses). Exposed for tests; everyone else reads :data:`FEATURES`."""
    src = LogSource if log_source is None else log_source
    msg = LogMessage if log_message is None else log_message
    daemon = IN_DAEMON if in_daemon is None else in_daemon
    typed = hasattr(msg, "get_pri")
    return Features(
        in_daemon=daemon,
        close_batch=hasattr(src, "close_batch"),
        set_transport_name=hasattr(src, "set_transport_name"),
        set_source_ipaddress=hasattr(msg, "set_source_ipaddress"),
        set_recvd_rawmsg_size=hasattr(msg, "set_recvd_rawmsg_size"),
        get_pri=hasattr(msg, "get_pri"),
        typed_values=typed,
        get_as_str=hasattr(msg, "get_as_str"),
        stale_receive_time=daemon,
    )


#: what the daemon (or the emulation) running this process offers, detected once at import
FEATURES: Features = detect_features()
