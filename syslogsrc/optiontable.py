"""Every option, declared once: its name, type, default, help, validation, and which front
ends take it. The daemon's options (``SourceOptions``), ``twistd syslogsrc``'s flags,
``syslogsrc-host``'s flags and the option tables in docs/ are all made from :data:`OPTIONS`
(``python -m syslogsrc.optiontable`` prints the tables; a test fails when the docs' copy is
stale).

Front ends (``drivers``):

* ``daemon`` — ``options("name" "value")`` of ``python(class("syslogsrc.SyslogSource"))``,
  also what ``syslogsrc-host -o name=value`` and ``SourceHost(options=...)`` hand a source;
* ``twistd`` — ``twistd syslogsrc --name VALUE``;
* ``host`` — ``syslogsrc-host --name VALUE``.

Where a value lands (``scope``): ``listener`` options are fields of
:class:`~syslogsrc.options.ListenerOptions` (every listener's default, a spec's ``key=``
overrides some), ``source`` options are fields of ``SourceOptions``, ``output`` options belong
to the standalone front ends (where messages go, how much may wait for the output).
"""

from __future__ import annotations

import datetime as dt
import sys
import zoneinfo
from collections.abc import Callable
from typing import Any

import attrs

from syslogsrc.framing import FRAMINGS
from syslogsrc.parsing import FORMATS

__all__ = [
    "DEFAULT_LISTEN",
    "OPTIONS",
    "Option",
    "OptionError",
    "markdown_table",
    "option",
    "parse_time_zone",
    "split_listen",
]


class OptionError(ValueError):
    """A bad option value. ``str()`` names the option and the value."""

    def __init__(self, option: str, value: object, why: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"option {option}({value!r}): {why}")


#: loopback only by default: exposing a receiver to the network is the operator's decision
DEFAULT_LISTEN = ("tcp:5514:interface=127.0.0.1", "udp:5514:interface=127.0.0.1")
PARSERS = ("hybrid", "syslogsrc", "native")
SOURCE_IP_MODES = ("pairs", "saddr", "none")
PEER_VERIFY = ("none", "optional", "required")
OUTPUT_FORMATS = ("json", "text")
NON_UTF8_POLICIES = (
    "escape",
    "replace",
)  # outputs.NON_UTF8_POLICIES (outputs imports Twisted-free)

_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}

#: every front end
_ALL = frozenset({"daemon", "twistd", "host"})
_SOURCE = frozenset({"daemon", "twistd"})  # SyslogSource's own; syslogsrc-host passes them with -o
_STANDALONE = frozenset({"twistd", "host"})


# -- conversions: text (3.x, command lines) or typed values (4.2+) to the option's value -------


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionError(name, value, "must be yes or no")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise OptionError(name, value, "must be an integer")
    try:
        return int(str(value).strip())
    except ValueError:
        raise OptionError(name, value, "must be an integer") from None


def _as_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise OptionError(name, value, "must be a number of seconds")
    try:
        return float(str(value).strip())
    except ValueError:
        raise OptionError(name, value, "must be a number of seconds") from None


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise OptionError(name, value, "must be a number")
    try:
        return float(str(value).strip())
    except ValueError:
        raise OptionError(name, value, "must be a number") from None


def _as_words(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(str(value).replace(",", " ").split())


def _as_text(name: str, value: Any) -> str:
    return str(value)


def split_listen(value: Any) -> tuple[str, ...]:
    """The listen option's specs, unchecked: separated by whitespace (a ``\\`` escapes it);
    commas are part of a spec (``allow=10.0.0.0/8,192.0.2.1``). A list (4.x typed values) is a
    list of such texts."""
    from syslogsrc.listen import _split_specs

    items = value if isinstance(value, list | tuple) else [value]
    return tuple(spec for item in items for spec in _split_specs(str(item)))


def _as_specs(name: str, value: Any) -> tuple[str, ...]:
    """The listen option: :func:`split_listen`, each spec checked (the error names it)."""
    from syslogsrc.listen import parse_listen

    specs = split_listen(value)
    if not specs:
        raise OptionError(name, value, "needs at least one listener")
    for spec in specs:
        parse_listen(spec)  # raises OptionError("listen", spec, why)
    return specs


def parse_time_zone(value: str) -> dt.tzinfo:
    """``Europe/Budapest`` or ``+01:00`` / ``-05:30`` (syslog-ng's time-zone() forms)."""
    text = value.strip()
    if text[:1] in "+-" and len(text) == 6 and text[3] == ":":
        try:
            hours, minutes = int(text[1:3]), int(text[4:6])
        except ValueError:
            raise OptionError("time-zone", value, "is not +hh:mm") from None
        sign = -1 if text[0] == "-" else 1
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise OptionError("time-zone", value, "is not a known time zone") from None


def _as_time_zone(name: str, value: Any) -> dt.tzinfo:
    return parse_time_zone(str(value))


def _as_metrics(name: str, value: Any) -> str:
    from syslogsrc.metrics import check_metrics_spec

    return check_metrics_spec(str(value).strip())


_CONVERT: dict[str, Callable[[str, Any], Any]] = {
    "bool": _as_bool,
    "int": _as_int,
    "seconds": _as_seconds,
    "number": _as_number,
    "words": _as_words,
    "text": _as_text,
    "specs": _as_specs,
    "time-zone": _as_time_zone,
    "endpoint": _as_metrics,
}


@attrs.frozen
class Option:
    """One option, for every front end that takes it."""

    #: as written in a configuration: ``options("max-message-size" "65536")``, ``--name``
    name: str
    #: its value when not given (None: not set)
    default: Any
    #: one line for ``--help``
    help: str
    #: the value's type: bool, int, seconds, number, words, text, specs, time-zone, endpoint
    kind: str
    #: where the value lands: listener (ListenerOptions), source (SourceOptions), output
    scope: str
    #: the front ends that take it: daemon, twistd, host
    drivers: frozenset[str]
    #: the values it may take (empty: any of its kind)
    choices: tuple[str, ...] = ()
    #: the least value of a number
    minimum: float | None = None
    #: the docs' description (markdown); ``help`` when empty
    doc: str = ""
    #: the default as the docs say it, when the value itself says it badly ("local", "off")
    default_doc: str = ""
    #: the listener kinds it applies to (listener options; docs/listeners.md)
    applies: str = "all"

    @property
    def attr(self) -> str:
        """The Python name: ``max_message_size``."""
        return self.name.replace("-", "_")

    def parse(self, value: Any) -> Any:
        """``value`` (text, or a typed value from syslog-ng 4.2+) as this option's value;
        :class:`OptionError` naming the option when it cannot be."""
        result = _CONVERT[self.kind](self.name, value)
        self.check(result)
        return result

    def check(self, result: Any, given: Any = None) -> None:
        """:class:`OptionError` unless ``result`` is one of :attr:`choices` and at least
        :attr:`minimum` (None, "not set", passes)."""
        if result is None:
            return
        given = result if given is None else given
        if self.choices and result not in self.choices:
            raise OptionError(self.name, given, f"must be one of {', '.join(self.choices)}")
        if self.minimum is not None:
            if isinstance(result, bool) or not isinstance(result, int | float):
                raise OptionError(self.name, given, f"must be a number >= {self.minimum:g}")
            if result < self.minimum:
                raise OptionError(self.name, given, f"must be a number >= {self.minimum:g}")

    def default_text(self) -> str | None:
        """The default as a command line writes it (None: no default)."""
        value = self.default
        if value is None:
            return None
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, tuple):
            return " ".join(value) if value else None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


def _listener(name: str, default: Any, kind: str, help: str, **kw: Any) -> Option:
    return Option(name, default, help, kind, "listener", kw.pop("drivers", _SOURCE), **kw)


def _source(name: str, default: Any, kind: str, help: str, **kw: Any) -> Option:
    return Option(name, default, help, kind, "source", kw.pop("drivers", _SOURCE), **kw)


def _output(name: str, default: Any, kind: str, help: str, **kw: Any) -> Option:
    return Option(name, default, help, kind, "output", kw.pop("drivers", _STANDALONE), **kw)


_STREAM = "tcp, tls, unix"
_CONNECTIONS = "tcp, tls, unix, http, https"
_ADDRESSED = "all but unix sockets"

#: every option, in the order the docs list them
OPTIONS: tuple[Option, ...] = (
    _source(
        "listen",
        DEFAULT_LISTEN,
        "specs",
        "listener specs separated by whitespace, e.g. tcp:5514 udp:5514:interface=::1",
        doc="Whitespace-separated listener specs: `tcp:`, `tcp6:`, `ssl:`, `unix:`, `systemd:`,"
        " `haproxy:`+stream, `udp:`, `udp6:`, `unixgram:`, `http:`, `https:`. Grammar and every"
        " argument: [listeners.md](listeners.md). twistd: `--listen` (repeatable).",
    ),
    _source(
        "format",
        "auto",
        "text",
        f"message format: {', '.join(FORMATS)}",
        choices=FORMATS,
        doc="`auto` (RFC 5424 or RFC 3164 per message), `rfc5424`, `rfc3164`, `json`, `raw`.",
    ),
    _source(
        "parser",
        "hybrid",
        "text",
        "hybrid (ours, made by the daemon's parser for the frames it reads alike), syslogsrc"
        " (ours) or native (the daemon's); outside the daemon all three are ours",
        choices=PARSERS,
        doc="`hybrid`: the messages of ours, made by the daemon's own parser for the frames it"
        " provably reads alike, by ours for the rest (see *Which parser*); `syslogsrc`: ours for"
        " every frame ([parsing.md](parsing.md)); `native`: the daemon's `LogMessage.parse` for"
        " every frame, with the driver's `flags()`/`time-zone()`. HTTP JSON bodies always use"
        " ours.",
    ),
    _source(
        "time-zone",
        None,
        "time-zone",
        "time zone of stamps without one, e.g. Europe/Budapest or +01:00",
        default_doc="local",
        doc="Zone of stamps without offset, for our parser: `Europe/Berlin` or `+01:00`.",
    ),
    _listener(
        "framing",
        "auto",
        "text",
        "stream framing: auto, octet-counting, lf, nul",
        choices=FRAMINGS,
        applies=_STREAM,
        doc="Stream framing: `auto` (per connection: octet-counting if it starts with a digit,"
        " else LF or NUL ends a message, as in `network()`), `octet-counting`, `lf`, `nul`.",
    ),
    _listener(
        "max-message-size",
        65536,
        "int",
        "longer messages are truncated and counted",
        minimum=64,
        doc="Longer messages are cut and counted (`truncated`), like `log-msg-size()`.",
    ),
    _listener(
        "max-connections",
        100,
        "int",
        "stream connections per listener; more are refused and counted",
        minimum=1,
        applies=_CONNECTIONS,
        doc="Stream connections per listener. At the limit the longest-open connection that"
        " completed no message in 2 s is closed to make room (counted in `timed_out`); without"
        " one the newcomer is refused and counted.",
    ),
    _listener(
        "idle-timeout",
        0,
        "seconds",
        "seconds of silence before a stream connection is closed (0: never)",
        minimum=0,
        applies=_CONNECTIONS,
        default_doc="0 (off)",
        doc="Seconds without a complete message (stream) or request (HTTP) before a connection"
        " is closed; 0 = never.",
    ),
    _listener(
        "tls-key-file",
        None,
        "text",
        "PEM key for ssl:/https: listeners",
        applies="ssl, https",
        doc="Key (PEM) of `ssl:`/`https:` listeners that do not name their own (`privateKey=`).",
    ),
    _listener(
        "tls-cert-file",
        None,
        "text",
        "PEM certificate for ssl:/https: listeners",
        applies="ssl, https",
        doc="Certificate (PEM) of `ssl:`/`https:` listeners that do not name their own"
        " (`certKey=`).",
    ),
    _listener(
        "tls-ca-file",
        None,
        "text",
        "PEM CA bundle that client certificates must chain to",
        applies="ssl, https",
        doc="CA bundle client certificates must chain to.",
    ),
    _listener(
        "tls-peer-verify",
        None,
        "text",
        "client certificates: none, optional, required",
        choices=PEER_VERIFY,
        applies="ssl, https",
        default_doc="`required` with a CA file, else `none`",
        doc="Client certificates: `none`, `optional`, `required`.",
    ),
    _listener(
        "tls-reload-interval",
        0,
        "seconds",
        "seconds between looks for changed TLS files (0: only on SIGHUP)",
        minimum=0,
        applies="ssl, https",
        default_doc="0 (off)",
        doc="Seconds between looks for changed TLS files; a changed set is taken for new"
        " connections without a reload, established ones stay open"
        " ([operations.md](operations.md#certificate-rotation)). 0 = only at a reload (twistd:"
        " SIGHUP).",
    ),
    _listener(
        "so-rcvbuf",
        4 * 1024 * 1024,
        "int",
        "SO_RCVBUF of datagram sockets, bytes",
        minimum=0,
        applies="udp, unixgram",
        doc="UDP/unixgram receive buffer in bytes (the kernel may cap it; logged).",
    ),
    _listener(
        "udp-split-lines",
        False,
        "bool",
        "split LF-separated messages in one datagram (yes/no)",
        applies="udp, unixgram",
        doc="A datagram with several LF-separated messages is split, one message per line.",
    ),
    _listener(
        "http-path",
        "/",
        "text",
        "HTTP path prefix that accepts POSTs",
        applies="http, https",
        doc="HTTP: accepted path prefix.",
    ),
    _listener(
        "http-token",
        None,
        "text",
        "bearer token HTTP clients must send (none: no auth)",
        applies="http, https",
        doc="HTTP: `Authorization: Bearer <token>` required (401 otherwise).",
    ),
    _listener(
        "http-max-body",
        16 * 1024 * 1024,
        "int",
        "largest HTTP body after decompression, bytes",
        minimum=1,
        applies="http, https",
        doc="HTTP: largest body after decompression (413 beyond).",
    ),
    _listener(
        "http-headers",
        (),
        "words",
        "HTTP request headers kept as http.header.<name> pairs (comma-separated)",
        applies="http, https",
        doc="HTTP: request headers copied into `http.header.<name>` pairs.",
    ),
    _listener(
        "http-ack",
        False,
        "bool",
        "answer a POST only once every message of it is stored (yes/no)",
        applies="http, https",
        doc="HTTP: answer `200` only once every message of the request is stored (inside"
        " syslog-ng: acknowledged by the destination; standalone: written to the output), not"
        " when it is posted. [relp.md](relp.md#http-acknowledgement)",
    ),
    _listener(
        "http-ack-timeout",
        30,
        "seconds",
        "with http-ack: seconds to wait for the acknowledgement before answering 503",
        minimum=0.001,
        applies="http, https",
        doc="HTTP with `http-ack`: how long a request waits for its messages to be stored;"
        ' then `503` with `Retry-After` (`{"status": "not-acknowledged"}`): they may'
        " still arrive, a retry may store them twice.",
    ),
    _listener(
        "relp-window",
        1024,
        "int",
        "most frames a RELP client may leave unanswered (omrelp's windowSize: 128)",
        minimum=1,
        applies="relp, relps",
        doc="RELP: the most frames a client may leave unanswered; one more closes its"
        " connection. omrelp's `windowSize` (128 by default) must not be larger."
        " [relp.md](relp.md#limits-and-errors)",
    ),
    _source(
        "source-ip",
        "pairs",
        "text",
        "the sender's address: pairs (PEERIP, PEERPORT), saddr ($SOURCEIP; leaks in the daemon)"
        " or none",
        choices=SOURCE_IP_MODES,
        drivers=frozenset({"daemon"}),
        doc="The sender's address: `pairs` (`PEERIP`, `PEERPORT`) or `saddr`"
        " (`set_source_ipaddress()`: `$SOURCEIP`, `HOST_FROM`; leaks 50 bytes a message, see"
        " *The sender's address*); 3.38.1 has no API: pairs. `none`: not given (two calls into"
        " the daemon fewer per message, for senders whose HOST is enough).",
    ),
    _source(
        "metrics",
        None,
        "endpoint",
        "serve Prometheus metrics at /metrics on this Twisted endpoint, e.g."
        " tcp:9100:interface=127.0.0.1 (off by default; without interface= every address)",
        default_doc="\u2013 (off)",
        doc="Serve Prometheus metrics at `/metrics` on this Twisted stream endpoint, e.g."
        " `tcp:9100:interface=127.0.0.1` (without `interface=` every address). Started and"
        " stopped with the listeners; counters start at 0 after a reload."
        " [operations.md](operations.md#metrics).",
    ),
    _listener(
        "allow",
        (),
        "words",
        "senders allowed: IPv4/IPv6 networks or addresses, comma-separated (default: all)",
        applies=_ADDRESSED,
        default_doc="\u2013 (everyone)",
        doc="Senders allowed, IPv4/IPv6 networks or addresses separated by commas or spaces; the"
        " default of listeners without `allow=` (not unix sockets). Outside: connection closed,"
        " datagram dropped, HTTP 403; counted in `denied`. [operations.md](operations.md)",
    ),
    _listener(
        "rate",
        None,
        "number",
        "messages per second per sender (token bucket; default: no limit)",
        applies=_ADDRESSED,
        default_doc="\u2013 (no limit)",
        doc="Messages per second per sender (token bucket); the default of `rate=`. Over it:"
        " stream paused (nothing lost), datagram dropped, HTTP 429; counted in `rate_limited`.",
    ),
    _listener(
        "burst",
        None,
        "int",
        "messages a sender may send at once beyond --rate (default: a second's worth)",
        applies=_ADDRESSED,
        default_doc="`ceil(rate)`",
        doc="Messages a sender may send at once beyond `rate`; the default of `burst=`.",
    ),
    # -- where messages go outside the daemon ---------------------------------------------------
    _output("output", "-", "text", "where messages go: a file path, or - for stdout"),
    _output(
        "output-format",
        "json",
        "text",
        "json (JSON lines) or text (syslog-ng's file layout)",
        choices=OUTPUT_FORMATS,
        doc="`json` (JSON lines, [output.md](output.md)) or `text` (syslog-ng's file layout).",
    ),
    _output(
        "output-non-utf8",
        "escape",
        "text",
        "bytes that are not UTF-8: escape (lossless, JSON \\udcNN escapes) or replace"
        " (U+FFFD, valid UTF-8 for every JSON reader)",
        choices=NON_UTF8_POLICIES,
        doc="Bytes that are not UTF-8: `escape` (lossless, `\\udcNN` in JSON) or `replace`"
        " (U+FFFD: valid UTF-8 for every JSON reader); [output.md](output.md).",
    ),
    _output(
        "output-fsync",
        False,
        "bool",
        "acknowledge messages (RELP, HTTP ack mode) only once the output is fsync'ed",
        drivers=frozenset({"twistd"}),
        doc="Acknowledge a message to a sender that waits for it (RELP, HTTP in acknowledgement"
        " mode) only once the output file is fsync'ed; `no`: once written and flushed."
        " [relp.md](relp.md)",
    ),
    _output(
        "log-iw-size",
        1000,
        "int",
        "messages on their way to the output before the source pauses (log-iw-size())",
        minimum=1,
        doc="Messages that may wait for the output before the listeners pause (HTTP answers"
        " 503); syslog-ng's own `log-iw-size()` default is 100.",
    ),
    _output(
        "keep-hostname",
        True,
        "bool",
        "keep HOST from the message (no: HOST is the sender's address, keep-hostname(no))",
        doc="Keep HOST as the message says (`no`: HOST becomes the sender's address, as"
        " syslog-ng's `keep-hostname(no)`).",
    ),
    Option(
        "stats-interval",
        0,
        "seconds between stats lines in the log (0: only at stop)",
        "seconds",
        "output",
        frozenset({"twistd"}),
        minimum=0,
    ),
    Option(
        "state-dir",
        None,
        "directory of the persist file (default: none)",
        "text",
        "output",
        frozenset({"host"}),
    ),
)

#: the declarations by name
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The declaration of option ``name`` (``-`` or ``_``)."""
    return OPTIONS_BY_NAME[name.replace("_", "-")]


def markdown_table(which: str) -> str:
    """An option table of docs/: ``daemon`` (docs/syslog-ng.md), ``listener``
    (docs/listeners.md) or ``standalone`` (docs/operations.md)."""
    if which == "daemon":
        rows = [o for o in OPTIONS if "daemon" in o.drivers]
        head = "| option | default | meaning |\n|---|---|---|\n"
        return head + "".join(
            f"| `{o.name}` | {_default_doc(o)} | {o.doc or _sentence(o.help)} |\n" for o in rows
        )
    if which == "listener":
        rows = [o for o in OPTIONS if o.scope == "listener"]
        head = "| option | applies to | default | |\n|---|---|---|---|\n"
        return head + "".join(
            f"| `{o.name}` | {o.applies} | {_default_doc(o)} | {o.doc or _sentence(o.help)} |\n"
            for o in rows
        )
    if which == "standalone":
        rows = [o for o in OPTIONS if o.scope == "output"]
        head = "| flag | twistd | syslogsrc-host | default | |\n|---|---|---|---|---|\n"
        return head + "".join(
            f"| `--{o.name}` | {_takes(o, 'twistd')} | {_takes(o, 'host')} | {_default_doc(o)} |"
            f" {o.doc or _sentence(o.help)} |\n"
            for o in rows
        )
    raise ValueError(f"no table {which!r}: daemon, listener or standalone")


_DASH = "\u2013"  # the docs' "none"


def _takes(o: Option, driver: str) -> str:
    return "yes" if driver in o.drivers else _DASH


def _default_doc(o: Option) -> str:
    if o.default_doc:
        return o.default_doc
    text = o.default_text()
    return _DASH if text is None else f"`{text}`"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


#: the docs' copies: between ``<!-- options: NAME -->`` and ``<!-- /options -->``
DOCS = {
    "daemon": "docs/syslog-ng.md",
    "listener": "docs/listeners.md",
    "standalone": "docs/operations.md",
}
_BLOCK = "<!-- options: {} -->\n"
_END = "<!-- /options -->\n"


def docs_block(text: str, which: str) -> str | None:
    """The table between the markers of ``which`` in a docs file's ``text`` (None: no markers)."""
    start = text.find(_BLOCK.format(which))
    if start < 0:
        return None
    start += len(_BLOCK.format(which))
    return text[start : text.index(_END, start)]


def write_docs(root: str) -> list[str]:
    """Rewrite the docs' tables from the declarations; returns the files changed."""
    import pathlib

    changed = []
    for which, name in DOCS.items():
        path = pathlib.Path(root) / name
        text = path.read_text()
        old = docs_block(text, which)
        if old is None:
            raise ValueError(f"{name} has no {_BLOCK.format(which).strip()} block")
        new = markdown_table(which)
        if old != new:
            path.write_text(text.replace(_BLOCK.format(which) + old, _BLOCK.format(which) + new))
            changed.append(name)
    return changed


if __name__ == "__main__":  # python -m syslogsrc.optiontable [--write-docs] [daemon|listener|...]
    if sys.argv[1:2] == ["--write-docs"]:
        print("\n".join(write_docs(".")) or "the docs' tables are up to date")
    else:
        for which in sys.argv[1:] or list(DOCS):
            print(markdown_table(which))
