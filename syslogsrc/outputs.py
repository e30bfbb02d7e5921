"""Where a host puts the messages a source posts: JSON lines or syslog-ng's text layout.

An output is any object with ``write(msg)``, ``flush()`` and ``close()`` (``reopen()`` too, for
log rotation). JSON lines carry one object per message whose keys are syslog-ng names: every
name-value pair, plus ``ISODATE``, ``PRI``, ``FACILITY``, ``SEVERITY``, ``SOURCEIP`` and
``TRANSPORT`` where known.

Bytes that are not UTF-8 are kept losslessly by default (``non_utf8="escape"``): each byte that
does not decode is written as the lone surrogate ``\\udcNN`` (Python's ``surrogateescape``),
escaped in the JSON text, so that ``json.loads(line)[name].encode("utf-8", "surrogateescape")``
gives back the exact bytes. Such a line is valid JSON, but readers differ on lone surrogates
(jq and Go turn them into U+FFFD, Rust's serde_json refuses the line): ``non_utf8="replace"``
writes U+FFFD for every byte sequence that is not UTF-8 instead, so every line is valid UTF-8
JSON for every reader, at the price of the original bytes (docs/output.md).
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from json.encoder import c_make_encoder, encode_basestring
from typing import IO, Any, Protocol

from syslogsrc.emulation import FACILITIES, SEVERITIES, LogMessage, _normal_ip
from syslogsrc.interfaces import Origin
from syslogsrc.parsing import ParsedMessage

#: the pair that carries a parsed message's tags (as a source sets it)
TAGS_PAIR = "syslogsrc.tags"

__all__ = [
    "NON_UTF8_POLICIES",
    "JsonLinesOutput",
    "Output",
    "Received",
    "TextOutput",
    "message_to_dict",
    "open_output",
    "parsed_to_dict",
]

#: What an output does with bytes that are not UTF-8: "escape" keeps them (``\\udcNN`` in JSON,
#: the bytes as they are in text), "replace" writes U+FFFD instead.
NON_UTF8_POLICIES = ("escape", "replace")


class Output(Protocol):
    """Where messages go. Two ways in: :meth:`render` a parsed message (twistd, SyslogService:
    no ``LogMessage`` in between) and :meth:`write_rendered` whole batches of rendered
    messages; or :meth:`write` one emulated ``LogMessage`` (``SourceHost``, any LogSource)."""

    def render(self, message: ParsedMessage, origin: Origin) -> bytes:
        """One message of ``origin`` as the bytes to write (a line)."""

    def render_batch(self, messages: Sequence[ParsedMessage], origin: Origin) -> bytes:
        """What :meth:`render` gives for each of ``messages``, joined."""

    def write_rendered(self, data: bytes, count: int) -> None:
        """Write what :meth:`render_batch` made of ``count`` messages."""

    def write(self, msg: LogMessage) -> None:
        """Render and write one emulated ``LogMessage``."""

    def flush(self) -> None:
        """Push what was written to the file (or pipe)."""

    def sync(self) -> None:
        """After :meth:`flush`: make what was written durable (fsync), where the file can be."""

    def close(self) -> None:
        """Flush and close."""


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, list):
        return [_text(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def message_to_dict(msg: LogMessage) -> dict[str, Any]:
    """The JSON object of one message: its pairs and the macros a reader needs."""
    out = {
        name: value.decode("utf-8", "surrogateescape") if type(value) is bytes else _text(value)
        for name, value in msg._values.items()
    }
    pri = msg._pri
    fac, sev = divmod(pri, 8)
    out["ISODATE"] = msg.timestamp().isoformat()
    out["PRI"] = pri
    out["FACILITY"] = FACILITIES[fac] if fac < len(FACILITIES) else str(fac)
    out["SEVERITY"] = SEVERITIES[sev]
    if msg._source_ip is not None:
        out["SOURCEIP"] = msg._source_ip
        if msg._source_port:
            out["SOURCEPORT"] = msg._source_port
    return out


class Received:
    """How a parsed message's source-side names are filled, as syslog-ng (and the emulation's
    driver) fills them: ``HOST_FROM`` is the sender's address (use-dns(no)), or ``hostname``
    for senders without one; ``HOST`` becomes ``HOST_FROM`` unless ``keep_hostname`` and the
    message has one."""

    __slots__ = ("hostname", "keep_hostname")

    def __init__(self, hostname: str | None = None, keep_hostname: bool = True) -> None:
        self.hostname = hostname if hostname is not None else socket.gethostname()
        self.keep_hostname = keep_hostname


_UTC = dt.UTC
#: the local UTC offset per minute (offsets change on minute boundaries, if ever)
_local_offsets: dict[int, dt.timezone] = {}


def _now_local() -> dt.datetime:
    """Now, in the local UTC offset (a stampless message's stamp, as the daemon gives it)."""
    when = time.time()
    minute = int(when // 60)
    tz = _local_offsets.get(minute)
    if tz is None:
        if len(_local_offsets) > 64:
            _local_offsets.clear()
        offset = dt.datetime.fromtimestamp(when).astimezone().utcoffset() or dt.timedelta(0)
        tz = _local_offsets[minute] = dt.timezone(offset)
    return dt.datetime.fromtimestamp(when, tz)


def parsed_fields(
    message: ParsedMessage, origin: Origin, received: Received
) -> tuple[dict[str, Any], dt.datetime, str | None]:
    """A parsed message's name-value pairs as syslog-ng would hold them once received
    (message pairs, ``syslogsrc.tags``, the origin's pairs, ``TRANSPORT``, ``HOST_FROM``,
    ``HOST``), its stamp (now, in the local offset, without one) and the sender's address."""
    values: dict[str, Any] = dict(message.pairs)
    if message.tags:
        values[TAGS_PAIR] = ",".join(message.tags)
    if origin.pairs:
        values.update(origin.pairs)
    values["TRANSPORT"] = origin.transport
    source_ip = _normal_ip(origin.peer_host) if origin.peer_host is not None else None
    host_from = source_ip or received.hostname
    values["HOST_FROM"] = host_from
    if not received.keep_hostname or not values.get("HOST"):
        values["HOST"] = host_from
    stamp = message.timestamp
    return values, stamp if stamp is not None else _now_local(), source_ip


def parsed_to_dict(message: ParsedMessage, origin: Origin, received: Received) -> dict[str, Any]:
    """The JSON object of one parsed message: the same keys and values as
    :func:`message_to_dict` gives for the ``LogMessage`` a source would build of it."""
    values, stamp, source_ip = parsed_fields(message, origin, received)
    out = {
        name: value.decode("utf-8", "surrogateescape") if type(value) is bytes else value
        for name, value in values.items()
    }
    pri = message.pri
    fac, sev = divmod(pri, 8)
    out["ISODATE"] = stamp.isoformat()
    out["PRI"] = pri
    out["FACILITY"] = FACILITIES[fac] if fac < len(FACILITIES) else str(fac)
    out["SEVERITY"] = SEVERITIES[sev]
    if source_ip is not None:
        out["SOURCEIP"] = source_ip
        if origin.peer_port:
            out["SOURCEPORT"] = origin.peer_port
    return out


# What json.dumps(obj, ensure_ascii=..., separators=(",", ":")) builds at every call, built once.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _dump(obj: dict[str, Any]) -> bytes:
    line = _encode(obj)
    try:
        return line.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # lone surrogates from undecodable bytes: escape them
        return _encode_ascii(obj).encode("ascii") + b"\n"


def _not_json(value: Any) -> Any:
    raise TypeError(f"not a str: {type(value).__name__}")


# json's C encoder, made once: what json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
# runs, without building it anew for every call. Only str values are taken (a bytes value, i.e.
# not UTF-8, raises TypeError: such a message takes the general way).
_encode_pairs = (
    c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)

#: names a message's own pairs must not have for the fast way (they are set after its pairs)
#: (HOST is not among them: a message's HOST stays where it is, unless keep_hostname is off)
_SET_AFTER = frozenset(
    (
        TAGS_PAIR,
        "TRANSPORT",
        "HOST_FROM",
        "ISODATE",
        "PRI",
        "FACILITY",
        "SEVERITY",
        "SOURCEIP",
        "SOURCEPORT",
    )
)

#: ``,"PRI":n,"FACILITY":"...","SEVERITY":"..."`` by PRI, as parsed_to_dict's json.dumps writes it
_PRI_JSON = [
    f',"PRI":{pri},"FACILITY":{encode_basestring(FACILITIES[pri >> 3])},'
    f'"SEVERITY":{encode_basestring(SEVERITIES[pri & 7])}'
    for pri in range(len(FACILITIES) * 8)
]


def _dump_replacing(obj: dict[str, Any]) -> bytes:
    line = _encode(obj)
    try:
        return line.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # The surrogates stand for the original bytes: get those back, then decode them the
        # way every reader can (JSON's syntax is ASCII, so only string contents change).
        raw = line.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "replace").encode("utf-8") + b"\n"


#: a rendered batch this long or longer is written to the file directly, not through its buffer
_DIRECT_WRITE = 64 * 1024


class _FileOutput:
    """Shared file handling: "-" is stdout; ``reopen()`` reopens the path (log rotation)."""

    def __init__(self, path: str | IO[bytes], *, non_utf8: str = "escape") -> None:
        if non_utf8 not in NON_UTF8_POLICIES:
            raise ValueError(
                f"non_utf8 must be one of {', '.join(NON_UTF8_POLICIES)}, not {non_utf8!r}"
            )
        self.path = path
        self.non_utf8 = non_utf8
        self._file: IO[bytes] = self._open()
        self.written = 0
        #: how HOST_FROM and HOST of parsed messages are filled (see :class:`Received`)
        self.received = Received()

    def _open(self) -> IO[bytes]:
        if not isinstance(self.path, str):
            return self.path
        if self.path == "-":
            return sys.stdout.buffer
        return open(self.path, "ab", buffering=1024 * 1024)

    def _render(self, msg: LogMessage) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def write(self, msg: LogMessage) -> None:
        self._file.write(self._render(msg))
        self.written += 1

    def render(self, message: ParsedMessage, origin: Origin) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def render_batch(self, messages: Sequence[ParsedMessage], origin: Origin) -> bytes:
        """The lines of ``messages`` (all of ``origin``), joined: what :meth:`render` gives
        for each. Raises if one of them cannot be rendered."""
        render = self.render
        return b"".join([render(message, origin) for message in messages])

    def write_rendered(self, data: bytes, count: int) -> None:
        """Write ``count`` messages that :meth:`render` made, joined in ``data``, in order
        after everything written before.

        A large batch (an HTTP request's) goes past the file's buffer, straight to the
        file: copied into the buffer it would hold the GIL (which the reactor's thread wants)
        for the copy, only to be written by the next flush anyway; the system call releases
        it. What the buffer holds is written first."""
        file = self._file
        raw = getattr(file, "raw", None)
        if len(data) < _DIRECT_WRITE or type(raw) is not io.FileIO:
            file.write(data)
        else:
            file.flush()
            view = memoryview(data)
            while view:
                done = raw.write(view)
                if done is None:  # non-blocking and not ready: the buffer takes the rest
                    file.write(view)
                    break
                view = view[done:]
        self.written += count

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        """fsync the file; a pipe or a terminal (stdout) has nothing to sync."""
        try:
            fd = self._file.fileno()
        except (OSError, ValueError):  # an in-memory file (io.UnsupportedOperation)
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a pipe, a socket, a terminal
                raise

    def reopen(self) -> None:
        if isinstance(self.path, str) and self.path != "-":
            self._file.close()
            self._file = self._open()

    def close(self) -> None:
        self._file.flush()
        if isinstance(self.path, str) and self.path != "-":
            self._file.close()


class JsonLinesOutput(_FileOutput):
    """One JSON object per line (see the module docstring for the keys and for bytes)."""

    def _render(self, msg: LogMessage) -> bytes:
        if self.non_utf8 == "replace":
            return _dump_replacing(message_to_dict(msg))
        return _dump(message_to_dict(msg))

    def render(self, message: ParsedMessage, origin: Origin) -> bytes:
        """One JSON line: the message's pairs and what ``origin`` gives every message."""
        obj = parsed_to_dict(message, origin, self.received)
        if self.non_utf8 == "replace":
            return _dump_replacing(obj)
        return _dump(obj)

    _last_stamp: tuple[Any, str] = (None, "")  # (datetime, its isoformat()), one entry

    def render_batch(self, messages: Sequence[ParsedMessage], origin: Origin) -> bytes:
        """As :meth:`render` for each, byte for byte, and faster: the pairs of a message go
        through json's C encoder in one call, and what every message of ``origin`` carries
        (TRANSPORT, HOST_FROM, SOURCEIP, the origin's pairs) was rendered once for the origin.
        A message with names the general way must place (one the origin also sets, say) or
        with values that are not text takes the general way."""
        if _encode_pairs is None:  # no C encoder (not CPython): the general way
            return super().render_batch(messages, origin)
        parts = origin.memo.get(self)
        if parts is None or parts[0] is not self.received:
            parts = origin.memo[self] = self._origin_parts(origin)
        _, names_after, with_host, without_host, end = parts
        encode = _encode_pairs
        pri_json = _PRI_JSON
        top = len(pri_json)
        last_stamp, last_iso = self._last_stamp
        now = None
        # what follows a message's pairs (``middle``, the stamp, PRI, ``end``) is the same for
        # the messages of a batch that share a stamp, a PRI and a HOST case: made once per run
        # of them (one entry: the last one made)
        tail = tail_middle = tail_pri = None
        # the parts of every line, joined once at the end: a line is its pairs without their
        # closing brace, then its tail (no string is copied to build a line)
        lines = []
        append = lines.append
        for message in messages:
            pairs = message.pairs
            pri = message.pri
            head = None
            if pairs and names_after.isdisjoint(pairs) and 0 <= pri < top:
                # a HOST is kept (unless keep_hostname is off); none: HOST_FROM's value is
                # added; an empty one is overwritten where it is (the general way)
                host = pairs.get("HOST")
                middle = without_host if host is None else with_host if host else None
                if middle is not None:
                    try:
                        head = "".join(encode(pairs, 0))
                    except TypeError:  # a value that is not text (bytes that are not UTF-8)
                        pass
            if head is None:  # names the general way must place, or values that are not text
                append(self.render(message, origin).decode("utf-8", "surrogateescape"))
                continue
            stamp = message.timestamp
            if stamp is None:  # stampless: the time of the batch (one read, one request)
                if now is None:
                    now = _now_local()
                stamp = now
            if stamp is not last_stamp:
                last_stamp = stamp
                last_iso = stamp.isoformat()
                tail = None
            if pri != tail_pri or middle is not tail_middle or tail is None:
                tail_pri, tail_middle = pri, middle
                tail = middle + last_iso + '"' + pri_json[pri] + end
            tags = message.tags
            if tags:
                append(head[:-1] + ',"' + TAGS_PAIR + '":' + encode_basestring(",".join(tags)))
            else:
                append(head[:-1])
            append(tail)
        self._last_stamp = (last_stamp, last_iso)
        try:
            return "".join(lines).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: each line the general way
            return super().render_batch(messages, origin)

    def _origin_parts(self, origin: Origin) -> tuple:
        """What :meth:`render_batch` writes after each message's own pairs, for ``origin``."""
        received = self.received
        pairs = origin.pairs or {}
        after = ",".join(
            [
                encode_basestring(name) + ":" + encode_basestring(value)
                for name, value in pairs.items()
            ]
            + ['"TRANSPORT":' + encode_basestring(origin.transport)]
        )
        source_ip = _normal_ip(origin.peer_host) if origin.peer_host is not None else None
        host_from = encode_basestring(source_ip or received.hostname)
        after += ',"HOST_FROM":' + host_from
        end = "}\n"
        if source_ip is not None:
            end = ',"SOURCEIP":' + encode_basestring(source_ip)
            if origin.peer_port:
                end += f',"SOURCEPORT":{int(origin.peer_port)}'
            end += "}\n"
        return (
            received,
            _SET_AFTER.union(pairs),
            "," + after + ',"ISODATE":"'
            if received.keep_hostname and "HOST" not in pairs
            else None,
            "," + after + ',"HOST":' + host_from + ',"ISODATE":"' if "HOST" not in pairs else None,
            end,
        )


class TextOutput(_FileOutput):
    """syslog-ng's default file layout: ``$DATE $HOST $MSGHDR$MESSAGE``."""

    def _render(self, msg: LogMessage) -> bytes:
        return self._line(msg._values.get, msg.timestamp())

    def render(self, message: ParsedMessage, origin: Origin) -> bytes:
        values, when, _ = parsed_fields(message, origin, self.received)

        def get(name: str) -> bytes | None:
            value = values.get(name)
            return None if value is None else _bytes(value)

        return self._line(get, when)

    def _line(self, get: Callable[[str], Any], when: dt.datetime) -> bytes:
        """The layout of a message whose values (bytes) ``get`` gives."""
        header = get("LEGACY_MSGHDR")
        if header is None:
            program = get("PROGRAM")
            pid = get("PID")
            header = b""
            if program:
                header = program + (b"[" + pid + b"]" if pid else b"") + b": "
        # syslog-ng pads the day with a space ("Jan  5"), as RFC 3164 does; %d would give "05"
        stamp = f"{when:%b} {when.day:2d} {when:%H:%M:%S}".encode()
        host = get("HOST")
        message = get("MESSAGE")
        line = b"%s %s %s%s\n" % (
            stamp,
            b"" if host is None else host,
            header,
            b"" if message is None else message,
        )
        if self.non_utf8 == "replace":
            return line.decode("utf-8", "replace").encode("utf-8")
        return line


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if type(value) is str else value  # type: ignore[return-value]


def open_output(
    path: str | IO[bytes], format: str = "json", *, non_utf8: str = "escape"
) -> JsonLinesOutput | TextOutput:
    """An output by name: ``format`` is "json" (JSON lines) or "text"; ``non_utf8`` is one of
    :data:`NON_UTF8_POLICIES`."""
    if format == "json":
        return JsonLinesOutput(path, non_utf8=non_utf8)
    if format == "text":
        return TextOutput(path, non_utf8=non_utf8)
    raise ValueError(f"output format must be json or text, not {format!r}")
