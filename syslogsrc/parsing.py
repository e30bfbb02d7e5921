"""Sans-IO syslog parsing: one frame of bytes in, syslog-ng's name-value pairs out.

No I/O, no Twisted, stdlib only.  ``parse()`` never raises on any input bytes: a frame that does
not parse as asked falls back (RFC 5424 -> syslog-ng-compatible RFC 5424 -> RFC 3164 -> raw) and
says so in ``tags``.  See docs/parsing.md for the pairs, the tags and the differences from
syslog-ng's own parser (modules/syslogformat/syslog-format.c).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable

from . import _abnf
from ._rfc3164 import _parse_rfc3164
from ._rfc5424 import _is_utf8, _parse_rfc5424_compat, _parse_rfc5424_strict
from ._tags import (
    DEFAULT_PRI,
    MAX_NAME_BYTES,
    TAG_INVALID_PRI,
    TAG_JSON_BAD_NAME,
    TAG_JSON_INVALID,
    TAG_RAW,
    TAG_RFC5424_FALLBACK,
)

__all__ = [
    "FORMATS",
    "MAX_NAME_BYTES",
    "ParsedMessage",
    "json_bytes",
    "json_number",
    "malformed",
    "parse",
    "parse_json_object",
]

FORMATS = ("auto", "rfc5424", "rfc3164", "json", "raw")

_UTC = datetime.UTC
_datetime = datetime.datetime
_fromisoformat = datetime.datetime.fromisoformat


class ParsedMessage:
    """One parsed frame, a value: treat it as immutable.

    ``pairs`` maps syslog-ng names to values (``str`` when the bytes are UTF-8, else the undecoded
    ``bytes``); ``pri`` is the numeric PRI; ``timestamp`` is aware, or None when the frame has no
    usable stamp; ``tags`` are syslog-ng-style tags; ``format`` is what actually parsed it.

    A bare ``__slots__`` class rather than ``attrs.frozen``: one is built per message, and frozen
    construction costs about 0.4 us more per message (a tenth of the parse budget).
    """

    __slots__ = ("format", "pairs", "pri", "tags", "timestamp")

    pairs: dict[str, str | bytes]
    pri: int
    timestamp: datetime.datetime | None
    tags: tuple[str, ...]
    format: str

    def __init__(self, pairs, pri, timestamp, tags, format):
        self.pairs = pairs
        self.pri = pri
        self.timestamp = timestamp
        self.tags = tags
        self.format = format

    def __eq__(self, other):
        if other.__class__ is not ParsedMessage:
            return NotImplemented
        return (
            self.pairs == other.pairs
            and self.pri == other.pri
            and self.timestamp == other.timestamp
            and self.tags == other.tags
            and self.format == other.format
        )

    __hash__ = None  # pairs is a dict

    def __repr__(self):
        return (
            f"ParsedMessage(pairs={self.pairs!r}, pri={self.pri!r}, timestamp={self.timestamp!r},"
            f" tags={self.tags!r}, format={self.format!r})"
        )


def _strip_trailer(frame: bytes) -> bytes:
    """Drop trailing LF and NUL (as syslog-ng does) and the CR of a trailing CRLF."""
    end = len(frame)
    while end and frame[end - 1] in b"\n\0":
        if frame[end - 1] == 10 and end > 1 and frame[end - 2] == 13:
            end -= 2
        else:
            end -= 1
    return frame if end == len(frame) else frame[:end]


def _restore_bytes(pairs: dict) -> dict:
    """Values that carry escaped non-UTF-8 bytes go back to the exact original bytes."""
    for key, value in pairs.items():
        if isinstance(value, str) and not _is_utf8(value):
            pairs[key] = value.encode("utf-8", "surrogateescape")
    return pairs


# --------------------------------------------------------------------------------------------
# JSON and raw
# --------------------------------------------------------------------------------------------


class _JsonNumber(str):
    """A JSON number kept as its source text (no float rounding, no int size limit)."""

    __slots__ = ()


# NaN, Infinity and -Infinity are no JSON, but Python's decoder (like json-c) reads them: they
# are kept as written, like numbers (never floats: _json_text writes only JSON's own forms).
_json_decoder = json.JSONDecoder(
    parse_float=_JsonNumber, parse_int=_JsonNumber, parse_constant=_JsonNumber
)
_json_string = json.encoder.encode_basestring  # quotes and escapes like json.dumps
_json_string_ascii = json.encoder.encode_basestring_ascii  # json.dumps(ensure_ascii=True)


def _json_text(value, string=_json_string) -> str:
    """Compact JSON text of a decoded value, numbers as they were written."""
    if isinstance(value, _JsonNumber):
        return str.__str__(value)
    if type(value) is int:  # a decoder with parse_int=int (HTTP): Python's encoder's form
        return int.__repr__(value)
    if isinstance(value, str):
        return string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join([_json_text(v, string) for v in value]) + "]"
    return "{" + ",".join([string(k) + ":" + _json_text(v, string) for k, v in value.items()]) + "}"


def json_bytes(value) -> bytes:
    """Compact JSON of a decoded value (numbers as :func:`json_number` strings), in UTF-8, as
    ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` writes it; a lone surrogate
    (from a ``\\ud800`` escape) cannot be UTF-8, and then the whole text is ASCII-escaped."""
    try:
        return _json_text(value).encode("utf-8")
    except UnicodeEncodeError:
        return _json_text(value, _json_string_ascii).encode("ascii")


def _bad_name(name: str) -> bool:
    """Empty, or longer than syslog-ng takes (a str of 63 characters is at most 252 bytes)."""
    return not name or (
        len(name) > MAX_NAME_BYTES // 4
        and len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    )


def _flatten(obj: dict, prefix: str, pairs: dict) -> bool:
    """Nested objects -> dotted names (as syslog-ng's json-parser); lists -> JSON text.

    A name syslog-ng would refuse (empty, or over 255 bytes) is left out, with what is under it;
    returns False if anything was. The bound keeps the names a frame makes in proportion to
    the frame (docs/reliability.md: at most about 50 times its size), whatever its nesting.
    """
    complete = True
    longest = MAX_NAME_BYTES // 4
    for key, value in obj.items():
        name = prefix + key if prefix else key
        if not name or (len(name) > longest and _bad_name(name)):
            complete = False
            continue
        kind = type(value)  # the decoder's own types first: is costs less than isinstance
        if kind is str:
            pairs[name] = value
        elif kind is int:  # a decoder with parse_int=int (HTTP): Python's encoder's form
            pairs[name] = int.__repr__(value)
        elif kind is dict or isinstance(value, dict):
            if value:
                complete = _flatten(value, name + ".", pairs) and complete
            else:
                pairs[name] = "{}"
        elif isinstance(value, str):  # a number kept as text
            pairs[name] = str.__str__(value)
        elif kind is list or isinstance(value, list):
            pairs[name] = _json_text(value)
        elif value is None:
            pairs[name] = ""
        else:
            pairs[name] = "true" if value else "false"
    return complete


def malformed(message: ParsedMessage) -> bool:
    """True when ``message`` is a frame its format did not fit: kept raw by the fallback, or
    read by the lenient RFC 5424 parser (a listener counts these in ``malformed``)."""
    tags = message.tags
    return bool(tags) and (message.format == "raw" or TAG_RFC5424_FALLBACK in tags)


def json_number(text: str) -> str:
    """A JSON number as the text it is to keep (``parse_int``/``parse_float`` of a decoder
    whose objects go to :func:`parse_json_object`; ``int`` is taken as ``parse_int`` too, and
    an int is kept as Python's encoder writes it)."""
    return _JsonNumber(text)


def parse_json_object(
    obj: dict, text: Callable[[], str] | None = None, *, default_pri: int = DEFAULT_PRI
) -> ParsedMessage:
    """A JSON object someone else decoded (numbers as :func:`json_number` strings or ints):
    the same message as ``parse(text().encode(), "json")``, without encoding and decoding it
    again. ``text`` gives the object's JSON text (default: its compact form, as
    :func:`json_bytes` writes it); it is called only when a name cannot be a pair (the whole
    object is then kept in MESSAGE, as :func:`parse` does)."""
    pairs: dict = {}
    if _flatten(obj, "", pairs):
        return ParsedMessage(pairs, default_pri, None, (), "json")
    pairs.setdefault("MESSAGE", text() if text is not None else json_bytes(obj).decode("utf-8"))
    return ParsedMessage(pairs, default_pri, None, (TAG_JSON_BAD_NAME,), "json")


def _parse_json(text: str):
    """A JSON object -> (pairs, complete), or None when the text is not one."""
    try:
        obj = _json_decoder.decode(text)
        if not isinstance(obj, dict):
            return None
        pairs = {}
        complete = _flatten(obj, "", pairs)
    except (ValueError, RecursionError):
        return None
    return pairs, complete


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------

_looks_like_rfc5424 = _abnf.looks_like_rfc5424.match


def parse(
    frame: bytes,
    format: str = "auto",
    *,
    time_zone: datetime.tzinfo | None = None,
    now: datetime.datetime | None = None,
    default_pri: int = DEFAULT_PRI,
) -> ParsedMessage:
    """Parse one syslog frame into syslog-ng name-value pairs.  Never raises on any bytes.

    ``format``: one of FORMATS.  ``auto`` takes RFC 5424 for frames starting ``<PRI>1 ``, else
    RFC 3164.  ``time_zone`` is used for stamps without an offset (None: local time zone);
    ``now`` decides the year of yearless stamps (None: the current time).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown syslog format {format!r}; expected one of {FORMATS}")
    if frame[-1:] in (b"\n", b"\0"):
        frame = _strip_trailer(frame)
    try:
        text = frame.decode("utf-8")
        clean = True
    except UnicodeDecodeError:
        text = frame.decode("utf-8", "surrogateescape")
        clean = False
    tags = []

    if format == "auto":
        format = "rfc5424" if _looks_like_rfc5424(text) else "rfc3164"

    if format == "rfc5424":
        result = _parse_rfc5424_strict(text, clean, tags)
        if result is None:
            del tags[:]
            tags.append(TAG_RFC5424_FALLBACK)
            result = _parse_rfc5424_compat(text, tags, time_zone)
            if result is None:
                del tags[1:]
                format = "rfc3164"
    if format == "rfc3164":
        result = _parse_rfc3164(text, tags, time_zone, now, default_pri)
        if result is None:
            tags.append(TAG_INVALID_PRI)
            format = "raw"
    elif format == "json":
        parsed = _parse_json(text) if clean else None
        if parsed is None:
            tags.append(TAG_JSON_INVALID)
            format = "raw"
        else:
            pairs, complete = parsed
            if complete:
                return ParsedMessage(pairs, default_pri, None, (), "json")
            # Some names could not be pairs: the whole object is kept, in MESSAGE if free.
            pairs.setdefault("MESSAGE", text)
            return ParsedMessage(pairs, default_pri, None, (TAG_JSON_BAD_NAME,), "json")

    if format == "raw":
        if tags:
            tags.append(TAG_RAW)
        return ParsedMessage(
            {"MESSAGE": text if clean else frame}, default_pri, None, tuple(tags), "raw"
        )

    pairs, pri, timestamp = result
    if not clean:
        _restore_bytes(pairs)
    return ParsedMessage(pairs, pri, timestamp, tuple(tags), format)
