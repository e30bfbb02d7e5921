"""HTTP request bodies, sans-IO: decoded as they arrive (gzip, deflate) within a limit, then
split into messages (raw lines, JSON, NDJSON). No Twisted here: ``protocols.http`` feeds the
bytes in and answers with the :class:`Reply` a body was refused with.

- :class:`BodyDecoder` decodes a body *while it arrives* (``Content-Encoding: gzip`` inflated
  incrementally) and never holds more than its limit of decoded bytes: past it, it drops what it
  has and only reads on, so neither a large upload nor a gzip bomb costs memory.
- :func:`split_body` turns a complete body into messages, validating all of it first: a request
  is posted whole or not at all (:class:`MalformedBody` says where it is not what its
  Content-Type says). JSON objects are parsed here, once, into the
  :class:`~syslogsrc.parsing.ParsedMessage` their compact text would give as a frame.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, BinaryIO

import attrs

from syslogsrc.parsing import ParsedMessage, json_bytes, json_number, parse, parse_json_object

__all__ = [
    "CODINGS",
    "NDJSON_TYPES",
    "BodyDecoder",
    "MalformedBody",
    "Reply",
    "malformed",
    "split_body",
    "too_large",
]

#: One message: a raw frame the sink parses, or a JSON object parsed here.
_Message = bytes | ParsedMessage

#: Content-Encoding -> zlib wbits (gzip: gzip wrapper only; deflate: zlib wrapper, or gzip).
CODINGS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": 32 + zlib.MAX_WBITS,
}
#: Content-Types of newline-delimited JSON
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})


@attrs.frozen
class Reply:
    """A response: status code, JSON body, extra headers."""

    code: int
    body: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def status(self) -> str:
        return str(self.body["status"])


def too_large(limit: int) -> Reply:
    """413: the body is over ``limit`` bytes, on the wire or decoded."""
    return Reply(413, {"status": "too-large", "error": f"body larger than {limit} bytes"})


def malformed(error: str) -> Reply:
    """400, with ``error`` saying what is wrong."""
    return Reply(400, {"status": "malformed", "error": error})


class BodyDecoder:
    """One request body, decoded while it streams in, never more than ``limit`` bytes kept.

    The limit applies on the wire and after decompression, whichever is passed first. Once a
    body is rejected (too large, undecodable, or refused on its headers), the rest of it is
    read and thrown away, so the reply goes out on a connection in a clean state.
    """

    def __init__(self, out: BinaryIO, limit: int, wbits: int | None) -> None:
        self._out = out
        self._limit = limit
        self._wbits = wbits
        self._inflater: Any = None  # zlib.Decompress while inside a compressed member
        self._wire = 0
        self.decoded = 0  #: decoded bytes kept so far
        self.rejection: Reply | None = None

    def reject(self, reply: Reply) -> None:
        """Refuse the body: drop what was kept, discard the rest. The first reason wins."""
        if self.rejection is None:
            self.rejection = reply
            self._inflater = None
            self._out.seek(0)
            self._out.truncate()

    def feed(self, data: bytes) -> None:
        if self.rejection is not None:
            return
        self._wire += len(data)
        if self._wire > self._limit:
            self.reject(too_large(self._limit))
        elif self._wbits is None:
            self._keep(data)
        else:
            self._inflate(data)

    def finish(self) -> None:
        """The whole body has arrived."""
        if self.rejection is None and self._inflater is not None:
            self.reject(malformed("compressed body ends in the middle of a stream"))

    def _inflate(self, data: bytes) -> None:
        # max_length bounds every step: a 10 kB bomb never becomes more than limit + 1 bytes.
        while data and self.rejection is None:
            if self._inflater is None:
                self._inflater = zlib.decompressobj(self._wbits)
            inflater = self._inflater
            try:
                chunk = inflater.decompress(data, self._limit - self.decoded + 1)
            except zlib.error as e:
                self.reject(malformed(f"cannot decompress the body: {e}"))
                return
            self._keep(chunk)
            if inflater.eof:  # end of one gzip member; another may follow (RFC 1952 2.2)
                data = inflater.unused_data
                self._inflater = None
            else:
                data = inflater.unconsumed_tail

    def _keep(self, chunk: bytes) -> None:
        self.decoded += len(chunk)
        if self.decoded > self._limit:
            self.reject(too_large(self._limit))
        else:
            self._out.write(chunk)


class MalformedBody(ValueError):
    """The body does not hold what its Content-Type says; ``str()`` says where."""


def split_body(media_type: str, body: bytes, max_size: int) -> tuple[list[_Message], int]:
    """All the messages of a body, or :class:`MalformedBody` (and then none of them), and how
    many were cut to ``max_size``."""
    if media_type in NDJSON_TYPES:
        return _JsonMessages(max_size).ndjson(body)
    if media_type == "application/json" or media_type.endswith("+json"):
        return _JsonMessages(max_size).json(body)
    return _split_lines(body, max_size)


def _split_lines(body: bytes, max_size: int) -> tuple[list[_Message], int]:
    """LF-separated raw messages; a CR before the LF is dropped, blank lines are skipped."""
    lines = (line[:-1] if line.endswith(b"\r") else line for line in body.split(b"\n"))
    messages: list[_Message] = [line for line in lines if line.strip()]
    if len(body) <= max_size:  # no line can be longer
        return messages, 0
    return _truncate(messages, max_size)


def _truncate(messages: list[_Message], max_size: int) -> tuple[list[_Message], int]:
    """Raw frames cut to ``max_size``."""
    truncated = 0
    for i, message in enumerate(messages):
        if type(message) is bytes and len(message) > max_size:
            messages[i] = message[:max_size]
            truncated += 1
    return messages, truncated


#: Compact JSON, in UTF-8 bytes, is less than this many times longer than the text it was
#: decoded from, in characters: a float grows at most 4.5 times ("1e15" is "1000000000000000.0"
#: in Python's form), a character at most 4 (UTF-8); escapes only shrink.
_JSON_GROWTH = 8


class _JsonMessages:
    """The messages of a JSON or NDJSON body. Each object is parsed here, once, into the
    message its compact JSON text would give as a frame (``parse(text, "json")``); when that
    text could be longer than ``max_size`` it is made, and cut like any frame."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.truncated = 0

    def ndjson(self, body: bytes) -> tuple[list[_Message], int]:
        messages: list[_Message] = []
        append = messages.append
        short = self.max_size // _JSON_GROWTH
        scan = _scan_json
        for number, line in enumerate(_utf8(body).split("\n"), 1):
            # _load_json's common case in line (a call less per line): a line that is one
            # object, read by the C scanner, what follows it blank; anything else, and every
            # error, goes to _load_json, which reads it again and says what is wrong
            if line[:1] == "{":
                try:
                    doc, end = scan(line, 0)
                except Exception:  # StopIteration, ValueError, RecursionError
                    doc = _load_json(line, number)
                else:
                    if end != len(line) and line[end:].strip():
                        doc = _load_json(line, number)
            elif line.strip():
                doc = _load_json(line, number)
                if type(doc) is not dict:
                    raise MalformedBody(f"line {number}: expected a JSON object, not {_kind(doc)}")
            else:
                continue
            # message()'s common case: a line too short to be cut
            append(parse_json_object(doc) if len(line) <= short else self.message(doc, len(line)))
        return messages, self.truncated

    def json(self, body: bytes) -> tuple[list[_Message], int]:
        doc = _load_json(_utf8(body), "body")
        if isinstance(doc, dict):
            return [self.message(doc, len(body))], self.truncated
        if not isinstance(doc, list):
            raise MalformedBody(f"body: expected a JSON object or array, not {_kind(doc)}")
        messages: list[_Message] = []
        for index, element in enumerate(doc):
            if isinstance(element, dict):
                messages.append(self.message(element, len(body)))
            elif type(element) is str:  # not a number, which is kept as text too
                if element.strip():
                    messages.append(element.encode("utf-8", "replace"))
            else:
                raise MalformedBody(
                    f"element {index}: expected an object or a string, not {_kind(element)}"
                )
        messages, cut = _truncate(messages, self.max_size)  # the strings among them
        return messages, self.truncated + cut

    def message(self, doc: dict[str, Any], source_length: int) -> ParsedMessage:
        max_size = self.max_size
        if source_length * _JSON_GROWTH <= max_size:
            return parse_json_object(doc, lambda: json_bytes(doc).decode("utf-8"))
        frame = json_bytes(doc)
        if len(frame) > max_size:
            self.truncated += 1
            frame = frame[:max_size]
        return parse(frame, "json")


def _utf8(body: bytes) -> str:
    """JSON text is UTF-8 (RFC 8259 8.1); a leading byte order mark is tolerated."""
    try:
        return body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        raise MalformedBody(f"line {line}: not UTF-8 ({e.reason})") from None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _float_text(text: str) -> str:
    """A JSON float as the text Python's encoder writes for it (what the message keeps)."""
    value = float(text)
    if value != value:
        return json_number("NaN")
    if value in (_INFINITY, -_INFINITY):
        return json_number("Infinity" if value > 0 else "-Infinity")
    return json_number(float.__repr__(value))


_INFINITY = float("inf")

#: what json.loads(text, parse_constant=_no_constants, ...) builds at every call, built once;
#: floats are kept as text in the form Python's encoder gives them, integers as ints (C; the
#: message keeps them in the same form, see parsing.json_number)
_decoder = json.JSONDecoder(parse_constant=_no_constants, parse_float=_float_text, parse_int=int)
_decode_json = _decoder.decode
_scan_json = _decoder.scan_once


def _load_json(text: str, where: str | int) -> Any:
    """The JSON value of ``text``; ``where`` (a line number, or what the text is) is for the
    error."""
    try:
        if text[:1] == "{":  # the common line: the C scanner at once, without decode()'s frames
            try:
                doc, end = _scan_json(text, 0)
            except StopIteration:
                pass  # decode() says what is wrong
            else:
                if end == len(text) or not text[end:].strip():
                    return doc
        if text.startswith("\ufeff"):  # json.loads's own error for it
            return json.loads(text, parse_constant=_no_constants)
        return _decode_json(text)
    except RecursionError:
        raise MalformedBody(f"{_where(where)}: JSON nested too deeply") from None
    except ValueError as e:  # json.JSONDecodeError says line and column
        raise MalformedBody(f"{_where(where)}: invalid JSON: {e}") from None


def _where(where: str | int) -> str:
    return f"line {where}" if type(where) is int else str(where)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if type(value) is int:
        return "a number"
    if isinstance(value, str):
        return "a string" if type(value) is str else "a number"  # floats are kept as text
    return "an array" if isinstance(value, list) else "an object"
