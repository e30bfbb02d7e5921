"""The emulation's ``syslogng.LogMessage`` and ``ParseOptions`` (AxoSyslog 4.x typed mode).

str/bytes in, bytes out, typed ints/floats/bools, ``KeyError`` for an unset name, read-only once
posted; the stamp keeps its offset; the macros a source reads back (``ISODATE``, ``PRI``,
``SOURCEIP`` ...) are computed as the daemon renders them. Exported by :mod:`syslogsrc.emulation`.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FACILITIES", "READ_ONLY_ERROR", "SEVERITIES", "LogMessage", "ParseOptions"]

#: the daemon's text (the emulation's other texts are in :mod:`syslogsrc._emulated_driver`)
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
