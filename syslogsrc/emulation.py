"""A faithful, pure-Python copy of the AxoSyslog 4.x Python *source* contract.

Outside syslog-ng there is no ``_syslogng`` C module; this module stands in for it, so that a
source written for the daemon runs and can be tested anywhere. Where the contract matters to a
source it behaves like the daemon (§1-§4 of the API reference):

* ``post_message`` is legal only from the thread running ``run()`` (``RuntimeError`` otherwise,
  with the daemon's text), takes only ``LogMessage`` (``TypeError``);
* a window of ``log-iw-size`` slots, freed when the consumer acknowledges a message;
* blocking mode (the class has no ``suspend``): a post that empties the window closes the batch
  and blocks until a slot frees or exit is requested;
* suspend/wakeup mode: a post that empties the window calls ``suspend()`` in the poster's thread;
  ``wakeup()`` comes from the consumer's thread when the window has refilled; a post while the
  window is empty is dropped with the daemon's error text and counted;
* ``close_batch()``, ``auto_close_batches`` (read after ``init()``), ``set_transport_name()``,
  ``persist_name``, ``parse_options``;
* ``LogMessage`` in typed mode: str/bytes in, bytes out, typed ints/floats/bools, ``KeyError``
  for unset names, read-only once posted.

The driving side (what syslog-ng's C code does around a source) lives in :class:`SourceDriver`,
used by :mod:`syslogsrc.host`.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "BatchedAckTracker",
    "ConsecutiveAckTracker",
    "InstantAckTracker",
    "LogMessage",
    "LogSource",
    "Logger",
    "ParseOptions",
    "Persist",
    "SourceDriver",
]

_log = logging.getLogger("syslogng")

#: the daemon's texts, so that logs and exceptions read the same in and out of syslog-ng
THREAD_ERROR = "post_message must be called from main thread"
BATCH_THREAD_ERROR = "close_batch() must be called from main thread"
NOT_A_MESSAGE_ERROR = "LogMessage expected in the first parameter"
BOOKMARK_ERROR = (
    "Bookmarks can not be used without creating an AckTracker instance (self.ack_tracker)"
)
MISSING_BOOKMARK_ERROR = (
    "a source with an ack_tracker must set a bookmark on every message it posts "
    "(syslog-ng crashes on one without)"
)
DROP_ERROR = "Incorrectly suspended source, dropping message"
READ_ONLY_ERROR = "Log message is read only, cannot set value"

_LOCAL_TZ = _dt.datetime.now().astimezone().tzinfo


_fixed_zones: dict[int, _dt.timezone] = {}


def _fixed_zone(seconds: int) -> _dt.timezone:
    """``timezone(timedelta(seconds=seconds))``, made once per offset (0 <= seconds < 86400)."""
    tz = _fixed_zones.get(seconds)
    if tz is None:
        tz = _fixed_zones[seconds] = _dt.timezone(_dt.timedelta(seconds=seconds))
    return tz


def _local_offset(when: float) -> _dt.timezone:
    offset = _dt.datetime.fromtimestamp(when).astimezone().utcoffset() or _dt.timedelta(0)
    return _dt.timezone(offset)


# --------------------------------------------------------------------------------------------
# LogMessage


class ParseOptions:
    """Stands in for the ``parse_options`` capsule: what ``LogMessage.parse`` honours."""

    __slots__ = ("default_pri", "format", "time_zone")

    def __init__(
        self, format: str = "auto", time_zone: _dt.tzinfo | None = None, default_pri: int = 13
    ) -> None:
        self.format = format
        self.time_zone = time_zone
        self.default_pri = default_pri

    def __repr__(self) -> str:
        return f"<ParseOptions format={self.format!r} time_zone={self.time_zone!r}>"


def _key(name: str | bytes) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "surrogateescape")
    if isinstance(name, str):
        return name
    raise TypeError(f"name must be str or bytes, not {type(name).__name__}")


def _typed(value: Any) -> Any:
    """The daemon's typed mode: what ``msg[k] = v`` stores."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bool | int | float) or value is None:
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, list):
        return [_typed(v) if isinstance(v, str | bytes) else _bad_value(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value
    return _bad_value(value)


def _bad_value(value: Any) -> Any:
    raise ValueError(f"unsupported value type {type(value).__name__} for a name-value pair")


_normal_ips: dict[str, str | None] = {}


def _normal_ip(ip: Any) -> str | None:
    """``str(ipaddress.ip_address(ip))``, or None when ``ip`` is not an address; remembered
    for str addresses, since every message of a sender asks again (2 us each time)."""
    cacheable = type(ip) is str
    if cacheable and ip in _normal_ips:
        return _normal_ips[ip]
    try:
        normal: str | None = str(ipaddress.ip_address(ip))
    except ValueError:
        normal = None
    if cacheable:
        if len(_normal_ips) >= 4096:
            _normal_ips.clear()
        _normal_ips[ip] = normal
    return normal


class LogMessage:
    """A log message: a mapping of names to values, plus PRI, timestamps and source address."""

    __slots__ = (
        "_bookmark",
        "_pri",
        "_rawmsg_size",
        "_read_only",
        "_recvd",
        "_source_ip",
        "_source_port",
        "_stamp",
        "_values",
    )

    def __init__(self, message: str | bytes | None = None, bookmark: Any = None) -> None:
        self._values: dict[str, Any] = {}
        self._recvd = time.time()
        self._stamp: tuple[float, _dt.tzinfo] | None = None  # None = the receive time
        self._pri = 13
        self._source_ip: str | None = None
        self._source_port = 0
        self._rawmsg_size: int | None = None
        self._bookmark = bookmark
        self._read_only = False
        if message is not None:
            if not isinstance(message, str | bytes):
                raise TypeError("message must be str or bytes")
            self._values["MESSAGE"] = _typed(message)

    # -- mapping -------------------------------------------------------------------------
    def __setitem__(self, name: str | bytes, value: Any) -> None:
        if self._read_only:
            raise TypeError(READ_ONLY_ERROR)
        # _key() and _typed() for the usual str name and str value, without the calls
        key = name if type(name) is str else _key(name)
        if type(value) is str:
            self._values[key] = value.encode("utf-8", "surrogateescape")
        else:
            self._values[key] = _typed(value)

    def __getitem__(self, name: str | bytes) -> Any:
        key = _key(name)
        try:
            return self._values[key]
        except KeyError:
            macro = _MACROS.get(key)
            if macro is None:
                raise
            return macro(self)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | bytes):
            return False
        key = _key(name)
        return key in self._values or key in _MACROS

    def keys(self) -> list[bytes]:
        """Set name-value pairs and macro names, as bytes (like the daemon)."""
        return [k.encode("utf-8", "surrogateescape") for k in self._values] + [
            k.encode() for k in _MACROS if k not in self._values
        ]

    def get(self, name: str | bytes, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def get_as_str(
        self,
        name: str | bytes,
        default: str | None = None,
        encoding: str = "utf-8",
        errors: str = "strict",
        repr: str = "internal",
    ) -> str | None:
        try:
            value = self[name]
        except KeyError:
            return default
        if isinstance(value, bytes):
            return value.decode(encoding, errors)
        if isinstance(value, list):
            return ",".join(v.decode(encoding, errors) for v in value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    # -- PRI, time, address --------------------------------------------------------------
    def set_pri(self, pri: int) -> None:
        if not isinstance(pri, int):
            raise TypeError("pri must be an int")
        self._pri = pri

    def get_pri(self) -> int:
        return self._pri

    def set_timestamp(self, timestamp: _dt.datetime) -> None:
        """Set STAMP as 4.x does: a naive datetime is local time; an aware one keeps its offset,
        read like the daemon reads it (a negative offset goes wrong, see below)."""
        if not isinstance(timestamp, _dt.datetime):
            raise ValueError("timestamp must be a datetime.datetime")
        offset = timestamp.utcoffset()
        if offset is None:
            when = timestamp.timestamp()  # naive: local time
            self._stamp = (when, _local_offset(when))
            return
        # The daemon reads the offset with PyDateTime_DELTA_GET_SECONDS, which ignores its days:
        # -05:00 (days -1, seconds 68400) becomes +19:00 and the instant moves a day with it
        # (12:00-05:00 is stored as 12:00+19:00; measured in 3.38.1 and 4.8.1). Copied, so that
        # a source passing negative offsets shows the same wrong times here; give it UTC.
        seconds = offset.seconds
        wall = timestamp.replace(tzinfo=_dt.UTC)
        self._stamp = (wall.timestamp() - seconds, _fixed_zone(seconds))

    def _set_stamp_exact(self, timestamp: _dt.datetime) -> None:
        """STAMP as the daemon's own parser sets it (no detour through a Python datetime)."""
        if timestamp.utcoffset() is None:
            self.set_timestamp(timestamp)
        else:
            self._stamp = (timestamp.timestamp(), _dt.timezone(timestamp.utcoffset()))

    def get_timestamp(self) -> _dt.datetime:
        """A naive datetime: the wall clock in the message's own offset (as in 4.x)."""
        return self.timestamp().replace(tzinfo=None)

    def timestamp(self) -> _dt.datetime:
        """STAMP as an aware datetime (emulation extra, used by outputs)."""
        when, tz = self._stamp if self._stamp is not None else (self._recvd, None)
        if tz is None:
            tz = _local_offset(when)
        return _dt.datetime.fromtimestamp(when, tz)

    def received(self) -> _dt.datetime:
        """RECVD as an aware datetime in local time (emulation extra)."""
        return _dt.datetime.fromtimestamp(self._recvd, _local_offset(self._recvd))

    def set_source_ipaddress(self, ip: str, port: int = 0) -> bool:
        normal = _normal_ip(ip)
        if normal is None:
            return False
        self._source_ip = normal
        self._source_port = int(port)
        return True

    def set_recvd_rawmsg_size(self, size: int) -> None:
        self._rawmsg_size = int(size)

    def set_bookmark(self, data: Any) -> None:
        self._bookmark = data

    @staticmethod
    def parse(raw: str | bytes, parse_options: ParseOptions) -> LogMessage:
        """Parse ``raw`` with the source's options, like the daemon: never raises on bad input."""
        if not isinstance(parse_options, ParseOptions):
            raise TypeError("parse_options must be the source's parse_options")
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        from syslogsrc.parsing import parse  # the core; imported late, it is optional here

        parsed = parse(
            raw,
            parse_options.format,
            time_zone=parse_options.time_zone,
            default_pri=parse_options.default_pri,
        )
        msg = LogMessage()
        msg._values.update({k: _typed(v) for k, v in parsed.pairs.items()})
        msg._pri = parsed.pri
        if parsed.timestamp is not None:
            msg._set_stamp_exact(parsed.timestamp)
        if parsed.tags:
            msg._values["syslogsrc.tags"] = ",".join(parsed.tags).encode()
        return msg

    def __repr__(self) -> str:
        return f"<LogMessage {self._values!r}>"


def _pri_macro(name: str) -> Callable[[LogMessage], bytes]:
    def render(msg: LogMessage) -> bytes:
        fac, sev = divmod(msg._pri, 8)
        return {
            "PRI": str(msg._pri),
            "FACILITY_NUM": str(fac),
            "SEVERITY_NUM": str(sev),
            "LEVEL_NUM": str(sev),
            "FACILITY": FACILITIES[fac] if fac < len(FACILITIES) else str(fac),
            "SEVERITY": SEVERITIES[sev],
            "LEVEL": SEVERITIES[sev],
            "PRIORITY": SEVERITIES[sev],
        }[name].encode()

    return render


FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def _isodate(msg: LogMessage) -> bytes:
    return msg.timestamp().isoformat(timespec="seconds").encode()


def _r_isodate(msg: LogMessage) -> bytes:
    return msg.received().isoformat(timespec="seconds").encode()


_MACROS: dict[str, Callable[[LogMessage], Any]] = {
    name: _pri_macro(name)
    for name in (
        "PRI", "FACILITY", "FACILITY_NUM", "SEVERITY", "SEVERITY_NUM", "LEVEL", "LEVEL_NUM",
        "PRIORITY",
    )
}  # fmt: skip
_MACROS.update(
    {
        "ISODATE": _isodate,
        "R_ISODATE": _r_isodate,
        "SOURCEIP": lambda m: (m._source_ip or "127.0.0.1").encode(),
        "SOURCEPORT": lambda m: str(m._source_port).encode(),
        "RAWMSG_SIZE": lambda m: str(m._rawmsg_size or 0).encode(),
    }
)


# --------------------------------------------------------------------------------------------
# Logger and Persist


class Logger:
    """``syslogng.Logger``: the daemon's internal log; here, Python ``logging`` ("syslogng")."""

    def error(self, message: str) -> None:
        _log.error(message)

    def warning(self, message: str) -> None:
        _log.warning(message)

    def info(self, message: str) -> None:
        _log.info(message)

    def debug(self, message: str) -> None:
        _log.debug(message)

    def trace(self, message: str) -> None:
        _log.log(5, message)


class _PersistStore:
    """The emulated ``syslog-ng.persist`` file: one JSON document in the host's state dir."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.values: dict[str, Any] = {}
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.values = {k: _decode_persist(v) for k, v in json.load(f).items()}

    def save(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({k: _encode_persist(v) for k, v in self.values.items()}, f)
        os.replace(tmp, self.path)


def _encode_persist(v: Any) -> Any:
    return {"bytes": v.hex()} if isinstance(v, bytes) else v


def _decode_persist(v: Any) -> Any:
    return bytes.fromhex(v["bytes"]) if isinstance(v, dict) else v


#: set by the host while a source is initialised or running; Persist refuses to work without it
_persist_store: _PersistStore | None = None


class Persist:
    """``syslogng.Persist``: a dict-like view of the persist file, keys ``<name>##<key>``."""

    def __init__(self, persist_name: str, defaults: dict[str, Any] | None = None) -> None:
        if _persist_store is None:
            raise RuntimeError("Persist can only be used in or after init()")
        if "##" in persist_name:
            raise ValueError("persist_name must not contain '##'")
        self._name = persist_name
        self._store = _persist_store
        for key, value in (defaults or {}).items():
            if key not in self:
                self[key] = value

    @property
    def persist_name(self) -> str:
        return self._name

    def _full(self, key: str) -> str:
        return f"{self._name}##{key}"

    def __getitem__(self, key: str) -> Any:
        with self._store.lock:
            return self._store.values[self._full(key)]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, str | int | bytes) or isinstance(value, bool):
            raise TypeError("value must be str, int or bytes")
        with self._store.lock:
            self._store.values[self._full(key)] = value
            self._store.save()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._full(key) in self._store.values

    def __iter__(self) -> Iterator[str]:
        prefix = self._name + "##"
        with self._store.lock:
            keys = [k[len(prefix) :] for k in self._store.values if k.startswith(prefix)]
        return iter(keys)


# --------------------------------------------------------------------------------------------
# Ack trackers


class _AckTracker:
    def _ack(self, bookmark: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _close(self) -> None:
        pass


class InstantAckTracker(_AckTracker):
    """Calls ``ack_callback(bookmark_data)`` for each acknowledged message, in any order."""

    def __init__(self, ack_callback: Callable[[Any], None]) -> None:
        self._callback = ack_callback

    def _ack(self, bookmark: Any) -> None:
        self._callback(bookmark)


class ConsecutiveAckTracker(_AckTracker):
    """Calls back with the newest bookmark whose predecessors are all acknowledged."""

    def __init__(self, ack_callback: Callable[[Any], None]) -> None:
        self._callback = ack_callback
        self._lock = threading.Lock()
        self._next_seq = 0  # sequence given to the next posted message
        self._acked: set[int] = set()
        self._first_unacked = 0
        self._bookmarks: dict[int, Any] = {}

    def _track(self, bookmark: Any) -> int:
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._bookmarks[seq] = bookmark
            return seq

    def _ack_seq(self, seq: int) -> None:
        newest = None
        with self._lock:
            self._acked.add(seq)
            while self._first_unacked in self._acked:
                self._acked.discard(self._first_unacked)
                newest = self._bookmarks.pop(self._first_unacked)
                self._first_unacked += 1
        if newest is not None:
            self._callback(newest)


class BatchedAckTracker(_AckTracker):
    """Calls ``batched_ack_callback(list_of_bookmarks)`` every ``batch_size`` acks or
    ``timeout`` milliseconds, whichever comes first."""

    def __init__(
        self, timeout: int, batch_size: int, batched_ack_callback: Callable[[list[Any]], None]
    ) -> None:
        self._timeout = timeout / 1000.0
        self._batch_size = batch_size
        self._callback = batched_ack_callback
        self._lock = threading.Lock()
        self._batch: list[Any] = []
        self._timer: threading.Timer | None = None

    def _ack(self, bookmark: Any) -> None:
        with self._lock:
            self._batch.append(bookmark)
            if len(self._batch) < self._batch_size:
                if self._timer is None:
                    self._timer = threading.Timer(self._timeout, self._flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if batch:
            self._callback(batch)

    def _close(self) -> None:
        self._flush()


# --------------------------------------------------------------------------------------------
# LogSource and what drives it


class LogSource:
    """``syslogng.LogSource`` as in AxoSyslog 4.x: subclass it, define ``run`` and
    ``request_exit`` (and ``init``/``deinit``; ``suspend`` + ``wakeup`` for non-blocking flow
    control). The daemon side is attached by :class:`~syslogsrc.emulation.SourceDriver`."""

    #: set by the driver after init() (the daemon's capsule)
    parse_options: ParseOptions | None = None

    def __init__(self) -> None:
        # Python-level attributes a subclass may set; the driver reads them at the daemon's steps
        self.auto_close_batches = True
        self.ack_tracker: _AckTracker | None = None
        self.flags: dict[str, bool] = {}

    def init(self, options: dict[str, Any]) -> bool:
        return True

    def deinit(self) -> None:
        pass

    def run(self) -> None:
        raise NotImplementedError

    def request_exit(self) -> None:
        raise NotImplementedError

    @property
    def persist_name(self) -> str:
        driver = self.__dict__.get("_driver")
        return driver.persist_name if driver is not None else ""

    def _require_driver(self) -> SourceDriver:
        driver = self.__dict__.get("_driver")
        if driver is None:
            raise RuntimeError("this LogSource is not attached to syslog-ng or a SourceHost")
        return driver

    def post_message(self, msg: LogMessage) -> None:
        self._require_driver().post(msg)

    def close_batch(self) -> None:
        self._require_driver().close_batch()

    def set_transport_name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError("transport name must be a str")
        self._require_driver().transport_name = name


class SourceDriver:
    """What syslog-ng's C code does around one Python source instance.

    ``consumer(msg)`` receives every posted message when its batch is closed (it must not block
    for long: put it on a queue); the consumer's thread later calls :meth:`ack` once per
    message, which frees its window slot, fires ack trackers and, in suspend mode, calls
    ``wakeup()`` when the window has refilled. ``on_batch()`` is called for every closed batch.
    """

    def __init__(
        self,
        source: LogSource,
        *,
        log_iw_size: int = 100,
        consumer: Callable[[LogMessage], None],
        on_batch: Callable[[], None] | None = None,
        persist_name: str = "",
        keep_hostname: bool = False,
    ) -> None:
        if log_iw_size < 1:
            raise ValueError(f"log-iw-size must be >= 1, not {log_iw_size}")
        self.source = source
        self.window_size = log_iw_size
        self.free = log_iw_size
        self.consumer = consumer
        self.on_batch = on_batch or (lambda: None)
        self.persist_name = persist_name
        self.keep_hostname = keep_hostname
        # Looked up once, like the daemon (right after __init__, before init()).
        self.nonblocking = callable(getattr(source, "suspend", None))
        if self.nonblocking and not callable(getattr(source, "wakeup", None)):
            raise TypeError(f"{type(source).__name__} defines suspend() but not wakeup()")
        # 3.38.1 and 4.8.1 both call wakeup() on the first acknowledgement after suspend()
        # (tests/test_agreement.py, WakeupThreshold); axo HEAD waits for min(batch, iw/4).
        self.wakeup_threshold = 1
        self.run_thread: int | None = None
        self.exit_requested = False
        self.suspended = False
        self.auto_close_batches = True
        self.transport_name: str | None = None
        self.cond = threading.Condition()
        #: stands in for the GIL where the daemon's ordering depends on it (suspend/wakeup)
        self.gil = threading.RLock()
        self.open_batch: list[LogMessage] = []
        self.stats = {"posted": 0, "dropped": 0, "acked": 0, "batches": 0, "suspends": 0}
        self.hostname = socket.gethostname()
        source.__dict__["_driver"] = self

    # -- the run() thread's side -----------------------------------------------------------
    def post(self, msg: LogMessage) -> None:
        if threading.get_ident() != self.run_thread:
            raise RuntimeError(THREAD_ERROR)
        if not isinstance(msg, LogMessage):
            raise TypeError(NOT_A_MESSAGE_ERROR)
        with self.cond:
            if self.free <= 0:
                self.stats["dropped"] += 1
                _log.error(DROP_ERROR)
                return
            tracker = self.source.ack_tracker
            if msg._bookmark is not None and tracker is None:
                raise RuntimeError(BOOKMARK_ERROR)
            if msg._bookmark is None and tracker is not None:
                # The daemon's ack trackers dereference the bookmark of every tracked message:
                # 3.38.1 and 4.8.1 segfault (4.8.1's ConsecutiveAckTracker asserts) on one
                # without. Here it fails loudly instead (tests/test_agreement.py).
                raise RuntimeError(MISSING_BOOKMARK_ERROR)
            self.free -= 1
            self.stats["posted"] += 1
        self.track_bookmark(msg)
        self._apply_source_attributes(msg)
        msg._read_only = True
        # The daemon hands a message on only when its batch is closed (4.1+; at once before).
        self.open_batch.append(msg)
        if self.auto_close_batches:
            self.close_batch()
        if self.nonblocking:
            # Like the daemon: the window is looked at after the post (an acknowledgement may
            # have come meanwhile), and the check and suspend() happen under the GIL, which
            # wakeup() needs too, so a wakeup cannot slip in between.
            with self.gil:
                with self.cond:
                    empty = self.free <= 0
                    if empty:
                        self.suspended = True
                        self.stats["suspends"] += 1
                if empty:
                    self.source.suspend()  # type: ignore[attr-defined]
            return
        with self.cond:
            if self.free > 0:
                return
        # Blocking mode. 4.8.1 closes the batch before sleeping, so a manual batch cannot stall.
        self.close_batch()
        with self.cond:
            while self.free <= 0 and not self.exit_requested:
                self.cond.wait()

    def close_batch(self) -> None:
        if threading.get_ident() != self.run_thread:
            raise RuntimeError(BATCH_THREAD_ERROR)
        batch, self.open_batch = self.open_batch, []
        for msg in batch:
            self.consumer(msg)
        self.stats["batches"] += 1
        self.on_batch()

    def run_returned(self) -> int:
        """``run()`` has returned: what is left in an unclosed batch is lost (4.8.1 delivers none
        of it and aborts on shutdown). Returns how many messages that was."""
        lost, self.open_batch = len(self.open_batch), []
        if lost:
            self.stats["dropped"] += lost
            _log.error(
                "run() returned with %d messages in an unclosed batch (auto_close_batches is "
                "False and close_batch() was not called): syslog-ng 4.8.1 aborts on shutdown",
                lost,
            )
        return lost

    def _apply_source_attributes(self, msg: LogMessage) -> None:
        values = msg._values
        if self.transport_name is not None:
            values["TRANSPORT"] = self.transport_name.encode()
        # use-dns(no): HOST_FROM is the address itself, or the local host name without one
        values["HOST_FROM"] = (msg._source_ip or self.hostname).encode()
        if not self.keep_hostname or not values.get("HOST"):
            values["HOST"] = values["HOST_FROM"]

    # -- the consumer's side ---------------------------------------------------------------
    def ack(self, msg: LogMessage) -> None:
        """A message was delivered: free its slot (from any thread)."""
        with self.cond:
            before = self.free
            self.free += 1
            self.stats["acked"] += 1
            # Like the daemon, every climb of the window to the threshold wakes the source, and
            # the slot is freed first, without the GIL: by the time wakeup() has the GIL the
            # run() thread may have posted into the slot and been suspended again. Such a stale
            # wakeup() happens in both daemons (and, more rarely, here); a source must check.
            wake = self.nonblocking and before < self.wakeup_threshold <= self.free
            self.cond.notify_all()
        tracker = self.source.ack_tracker
        if msg._bookmark is not None and tracker is not None:
            if isinstance(tracker, ConsecutiveAckTracker):
                tracker._ack_seq(msg._bookmark[0])
            else:
                tracker._ack(msg._bookmark)
        if wake:
            with self.gil:
                self.suspended = False
                self.source.wakeup()  # type: ignore[attr-defined]

    def track_bookmark(self, msg: LogMessage) -> None:
        tracker = self.source.ack_tracker
        if msg._bookmark is not None and isinstance(tracker, ConsecutiveAckTracker):
            msg._bookmark = (tracker._track(msg._bookmark),)

    # -- the controlling thread's side ------------------------------------------------------
    def request_exit(self) -> None:
        with self.cond:
            self.exit_requested = True
            self.cond.notify_all()
