"""The ready-made source: :class:`SyslogSource` and its options, :class:`SourceOptions`.

It listens where the ``listen`` option says and parses each message with the parser the
``parser`` option names: ours (:mod:`syslogsrc.parsing`), the daemon's own (``native``), or
``hybrid``, the daemon's for the frames its parser reads exactly as ours does (probed here at
``attach()``, once per format) and ours for the rest. The per-origin builders of the daemon's
parser are in :mod:`syslogsrc._daemon_builders`.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer

from syslogsrc import _daemon_parse, optiontable
from syslogsrc._daemon_builders import hybrid_builder, native_builder
from syslogsrc._daemon_time import stamp_carrier
from syslogsrc._logmsg import TAGS_PAIR, value_of
from syslogsrc._twisted_source import TwistedSource
from syslogsrc.interfaces import Origin
from syslogsrc.options import ListenerOptions, OptionError
from syslogsrc.optiontable import option
from syslogsrc.parsing import ParsedMessage, _strip_trailer, parse
from syslogsrc.runtime import FEATURES, LogMessage

__all__ = ["SourceOptions", "SyslogSource"]

_UTC = dt.UTC
_IN_DAEMON = FEATURES.in_daemon


@attrs.frozen(kw_only=True)
class SourceOptions:
    """Every option of :class:`SyslogSource`, validated (the syslog-ng names, ``-`` or ``_``):
    what each means, its default and its limits are declared in :mod:`syslogsrc.optiontable`
    (and the table of docs/syslog-ng.md)."""

    listen: tuple[str, ...] = option("listen").default
    format: str = option("format").default
    parser: str = option("parser").default
    time_zone: dt.tzinfo | None = option("time-zone").default
    metrics: str | None = option("metrics").default
    source_ip: str = option("source-ip").default
    listener: ListenerOptions = attrs.Factory(ListenerOptions)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SourceOptions:
        """Build from what ``init()`` receives (strings in 3.x, typed values in 4.2+)."""
        kwargs: dict[str, Any] = {}
        listener: dict[str, Any] = {}
        for key, value in options.items():
            name = str(key).replace("_", "-")
            declared = optiontable.OPTIONS_BY_NAME.get(name)
            if declared is None or "daemon" not in declared.drivers:
                raise OptionError(name, value, "is not an option of SyslogSource")
            into = listener if declared.scope == "listener" else kwargs
            into[declared.attr] = declared.parse(value)
        kwargs["listener"] = ListenerOptions(**listener)
        return cls(**kwargs)


class SyslogSource(TwistedSource):
    """The ready-made source: listens where ``listen`` says and parses each message.

    See :class:`SourceOptions` for the options, and ``docs/syslog-ng.md``.
    """

    options: SourceOptions

    @staticmethod
    def generate_persist_name(options: Mapping[str, Any]) -> str:
        """Called by the daemon before ``init()``: a name from the listen option, so that two
        SyslogSources in one configuration do not collide (without it syslog-ng refuses to
        start: "conflicting persist-names", both being ``python-source(<class>)``)."""
        # unchecked: the daemon asks before init(), which reports a bad spec
        listen = optiontable.split_listen(options.get("listen", optiontable.DEFAULT_LISTEN))
        return "syslogsrc(" + ",".join(listen) + ")"

    def configure(self, options: dict[str, Any]) -> None:
        self.options = SourceOptions.from_options(options)
        from syslogsrc.listen import parse_listen

        self._specs = [s for text in self.options.listen for s in parse_listen(text)]
        kinds = {s.transport for s in self._specs}
        # RELP answers once stored; HTTP with http-ack too: both need the daemon's ack tracker
        self.acknowledging = bool(
            kinds & {"relp", "relps"}
            or (kinds & {"http", "https"} and self.options.listener.http_ack)
        )
        # set_transport_name() overwrites TRANSPORT at every post: only right for one kind.
        self.transport_name = kinds.pop() if len(kinds) == 1 else None
        self._format = self.options.format
        self._time_zone = self.options.time_zone
        self._native = self.options.parser == "native"
        self._hybrid = self.options.parser == "hybrid"
        # the hybrid's pre-check depends on the date (ours and the daemon's, read once a minute)
        self.builder_ttl = 60.0 if self._hybrid else None
        #: format -> the shapes of frames the daemon's parser reads as ours (hybrid; at attach)
        self._c_shapes: dict[str, tuple[str, ...]] = {}
        self._daemon_today_until = 0.0  # when to ask the daemon's date again (monotonic)
        self._daemon_today_value: dt.date | None = None
        self.metrics_spec = self.options.metrics
        self.source_ip = self.options.source_ip

    def listener_names(self) -> list[str]:
        return [spec.text for spec in self._specs]

    def attach(self, reactor: Any) -> defer.Deferred[list[Any]]:
        self._c_shapes = {}
        if _IN_DAEMON and self.sink is self:
            probe = LogMessage.parse(stamp_carrier(dt.datetime.now(_UTC)), self.parse_options)
            self._msgformat_pair = bool(value_of(probe, "MSGFORMAT"))
        if self._hybrid and _IN_DAEMON and self.sink is self:
            formats = {self._format} | {s.format for s in self._specs if s.format is not None}
            for fmt in sorted(formats):
                self._c_shapes[fmt] = self._shapes_read_alike(fmt)
            self.logger.info(
                "syslogsrc: parser hybrid: the daemon's parser for "
                + "; ".join(
                    f"format {fmt}: {', '.join(names) or 'no frame'}"
                    for fmt, names in sorted(self._c_shapes.items())
                )
            )
        return super().attach(reactor)

    def _frame_test(self, names: tuple[str, ...]) -> _daemon_parse.FrameTest:
        """The hybrid's pre-check for the shapes ``names``, as of today by our clock and the
        daemon's."""
        return _daemon_parse.frame_test(*self._shapes_today(names))

    def _header_test(self, names: tuple[str, ...]) -> Any:
        """The headers of the shapes ``names`` (``_daemon_parse.header_test``), as of the same
        days as :meth:`_frame_test`."""
        return _daemon_parse.header_test(*self._shapes_today(names))

    def _shapes_today(
        self, names: tuple[str, ...]
    ) -> tuple[tuple[str, ...], dt.date, dt.date | None]:
        """``names``, our date and the daemon's, for the hybrid's tests of a frame."""
        daemon_today = self._daemon_today()
        if daemon_today is None:  # the daemon's date unknown: its year of BSD stamps too
            names = tuple(n for n in names if n != "rfc3164-bsd")
        return names, _today(), daemon_today

    def _daemon_today(self) -> dt.date | None:
        """The date of the daemon's clock as its parser sees it (it decides the year of BSD
        stamps), asked at most once a minute: around midnight it may not be ours yet."""
        now = time.monotonic()
        if now >= self._daemon_today_until:
            self._daemon_today_until = now + 60.0
            try:
                probe = LogMessage.parse(b"<13>probe", self.parse_options)
                self._daemon_today_value = dt.date.fromisoformat(
                    value_of(probe, "R_ISODATE")[:10].decode()
                )
            except Exception:  # no date to read: no BSD stamp for the daemon's parser
                self._daemon_today_value = None
        return self._daemon_today_value

    def _shapes_read_alike(self, fmt: str) -> tuple[str, ...]:
        """The shapes of frames (:mod:`syslogsrc._daemon_parse`) that the daemon's parser,
        with this driver's parse options, reads as ours does in format ``fmt``: each tried on
        probe frames, once."""
        if fmt == "auto":
            wanted: tuple[str, ...] = _daemon_parse.SHAPES
        elif fmt == "rfc3164":
            wanted = tuple(n for n in _daemon_parse.SHAPES if n.startswith("rfc3164"))
        elif fmt == "rfc5424":
            wanted = ("rfc5424",)
        else:  # json, raw: the daemon has no such parser
            wanted = ()
        if self._time_zone is not None:  # ours reads stamps without offset in another zone
            wanted = tuple(n for n in wanted if n not in _daemon_parse.LOCAL_SHAPES)
        alike = []
        for name, frames in _daemon_parse.probes().items():
            if name not in wanted:
                continue
            try:
                if all(self._read_alike(frame, fmt) for frame in frames):
                    alike.append(name)
            except Exception as exc:  # a probe the daemon refuses: not known to be read alike
                self.logger.debug(f"syslogsrc: probe of {name} failed: {exc!r}")
        return tuple(alike)

    def _read_alike(self, frame: bytes, fmt: str) -> bool:
        """Whether both parsers make the same message of ``frame``, as far as the daemon's
        parse options can change it (fields, stamp, PRI, tags, raw message)."""
        mine = self._parsed_message(parse(frame, fmt, time_zone=self._time_zone))
        theirs = LogMessage.parse(frame, self.parse_options)
        names = [*_PROBED_NAMES, *(n for n in _probe_sd_names(frame))]
        for name in names:
            a, b = _probe_value(mine, name), _probe_value(theirs, name)
            if a != b:
                self.logger.debug(
                    f"syslogsrc: parser hybrid: {name} differs for {frame!r}: {a!r} (ours) != {b!r}"
                )
                return False
        get_timestamp = getattr(theirs, "get_timestamp", None)
        if get_timestamp is not None and get_timestamp() != mine.get_timestamp():
            return False
        return True

    def listeners(self, reactor: Any) -> list[Any]:
        from syslogsrc.listen import make_listener

        return [make_listener(s, reactor, self.sink, self.options.listener) for s in self._specs]

    def builder(self, origin: Origin) -> Callable[[bytes | ParsedMessage], Any]:
        """With the daemon's parser (``native``, or ``hybrid`` where it reads frames as ours do),
        a builder of :mod:`syslogsrc._daemon_builders` made for ``origin``, unless a subclass
        overrides :meth:`TwistedSource.build_message` or :meth:`TwistedSource.annotate`; else
        :meth:`TwistedSource.builder`."""
        if (
            type(self).build_message is SyslogSource.build_message
            and type(self).annotate is TwistedSource.annotate
        ):
            if self._native and origin.format is None:
                return native_builder(self, origin)
            if self._c_shapes:
                return hybrid_builder(self, origin)
        return super().builder(origin)

    def build_message(self, message: bytes | ParsedMessage, origin: Origin) -> Any:
        if type(message) is not bytes:
            return self.message_from(message, origin, len(message.pairs.get("MESSAGE", "")))
        fmt = origin.format
        names = self._c_shapes.get(fmt or self._format) if self._c_shapes else None
        bare = _strip_trailer(message) if message[-1:] in (b"\n", b"\0") else message
        if names and _daemon_parse.accepts(self._frame_test(names), bare):
            # hybrid: the same decision as _daemon_builders.hybrid_builder's
            msg = LogMessage.parse(bare, self.parse_options)
            self.annotate(msg, origin, len(message))
            return msg
        if self._native and fmt is None:
            msg = LogMessage.parse(message, self.parse_options)
            self.annotate(msg, origin, len(message))
            return msg
        parsed = parse(message, fmt or self._format, time_zone=self._time_zone)
        return self.message_from(parsed, origin, len(message))


#: what the daemon's parse options can change of a message, compared on the hybrid's probes
_PROBED_NAMES = (
    "HOST",
    "PROGRAM",
    "PID",
    "MSGID",
    "MESSAGE",
    "LEGACY_MSGHDR",
    "RAWMSG",
    "SDATA",
    "PRI",
    "ISODATE",
    "TAGS",
    TAGS_PAIR,
    "MSGFORMAT",
)


def _probe_sd_names(frame: bytes) -> list[str]:
    """The ``.SDATA.<id>.<param>`` names of a probe frame's SD (no escapes in probes)."""
    names = []
    for element in re.findall(rb"\[([^ \]]+)((?: [^=]+=\"[^\"]*\")*)\]", frame):
        sd_id = element[0].decode()
        for param in re.findall(rb' ([^=]+)="', element[1]):
            names.append(f".SDATA.{sd_id}.{param.decode()}")
    return names


def _probe_value(msg: Any, name: str) -> bytes:
    """:func:`~syslogsrc._logmsg.value_of`, with 4.x's typed empty list (``TAGS`` of a message
    without tags) as the empty value it is."""
    value = value_of(msg, name)
    return b"" if value == b"[]" else value


def _today() -> dt.date:
    return dt.date.today()
