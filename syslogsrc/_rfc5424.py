"""RFC 5424, strictly (one regex for the whole message, :data:`syslogsrc._abnf.SYSLOG_MSG`),
and as syslog-ng reads it (the lenient second chance). Sans-IO; used by
:func:`syslogsrc.parsing.parse`."""

from __future__ import annotations

from . import _abnf
from ._rfc3164 import _hostname
from ._stamps import _iso_stamp, _rfc3339
from ._tags import TAG_MISSING_TIMESTAMP

# --------------------------------------------------------------------------------------------
# RFC 5424, strict (one regex for the whole message, see _abnf.SYSLOG_MSG)
# --------------------------------------------------------------------------------------------

_syslog_msg_match = _abnf.syslog_msg.fullmatch
_sd_tokens = _abnf.sd_token.findall
_unescape = _abnf.unescape_param_value
_BOM = _abnf.BOM


def _structured_data(sd: str, pairs: dict) -> None:
    """STRUCTURED-DATA (already validated) -> ``.SDATA.<SD-ID>.<PARAM-NAME>`` pairs."""
    prefix = empty = None
    for sd_id, name, value in _sd_tokens(sd):
        if sd_id:
            if empty is not None:
                pairs[empty] = ""
            prefix = ".SDATA." + sd_id + "."
            # syslog-ng marks an element without parameters with an empty ".SDATA.<SD-ID>".
            empty = ".SDATA." + sd_id
        else:
            empty = None
            pairs[prefix + name] = _unescape(value) if "\\" in value else value
    if empty is not None:
        pairs[empty] = ""


def _parse_rfc5424_strict(text: str, clean: bool, tags: list):
    """RFC 5424 section 6, strictly; (pairs, pri, timestamp) or None."""
    m = _syslog_msg_match(text)
    if m is None:
        return None
    prival, stamp, host, app, procid, msgid, sd, msg = m.groups()
    pri = int(prival)
    if pri > 191:
        return None
    if stamp is None:
        timestamp = None
        tags.append(TAG_MISSING_TIMESTAMP)
    else:
        try:
            timestamp = _rfc3339(stamp)
        except ValueError:  # e.g. February 30th, which the ABNF lets through
            return None
    pairs = {}
    if host != "-":
        pairs["HOST"] = host
    if app != "-":
        pairs["PROGRAM"] = app
    if procid != "-":
        pairs["PID"] = procid
    if msgid != "-":
        pairs["MSGID"] = msgid
    if sd != "-":
        _structured_data(sd, pairs)
    if msg is None:
        msg = ""
    elif msg[:1] == _BOM:
        # MSG-UTF8 = BOM UTF-8-STRING: after a BOM the rest must be UTF-8.
        if not clean and not _is_utf8(msg):
            return None
        msg = msg[1:]
    pairs["MESSAGE"] = msg
    return pairs, pri, timestamp


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# RFC 5424 as syslog-ng reads it (_syslog_format_parse_syslog_proto): the second chance for a
# frame that starts like RFC 5424 but breaks the ABNF (long SD-IDs, no offset, ...)
# --------------------------------------------------------------------------------------------

_SD_NAME_SIZE = 256  # syslog-ng's buffer for ".SDATA.<id>.<param>" names, NUL included
_SDATA_PREFIX = ".SDATA."


def _is_sd_name_char(c: str) -> bool:
    return c < "\x80" and c not in '= ]"'


def _compat_sd(text: str, pos: int, pairs: dict) -> int:
    """Port of syslog-ng's SD reader; returns the new position or -1 on error."""
    n = len(text)
    if pos < n and text[pos] == "-":
        return pos + 1
    if not (pos < n and text[pos] == "["):
        return -1
    found = {}
    pos += 1
    if pos < n and text[pos] == " ":
        pos += 1
    while True:
        start = pos
        while pos < n and text[pos] not in " ]":
            if not _is_sd_name_char(text[pos]):
                return -1
            pos += 1
        sd_id = text[start:pos]
        if not sd_id or len(_SDATA_PREFIX) + len(sd_id) >= _SD_NAME_SIZE - 1:
            return -1
        if (pos < n and text[pos] == "]") or text.startswith(" ]", pos):
            if text[pos] == " ":
                pos += 1
            found[_SDATA_PREFIX + sd_id] = ""
        while pos < n and text[pos] != "]":
            if text[pos] != " ":
                return -1
            pos += 1
            start = pos
            while pos < n and text[pos] != "=":
                if not _is_sd_name_char(text[pos]):
                    return -1
                pos += 1
            name = text[start:pos]
            if not name:
                return -1
            key = _SDATA_PREFIX + sd_id + "." + name
            if len(key) >= _SD_NAME_SIZE or pos >= n:
                return -1
            pos += 1  # "="
            if pos < n and text[pos] == '"':
                pos += 1
                value = []
                quote = False
                while pos < n and (text[pos] != '"' or quote):
                    c = text[pos]
                    if not quote and c == "\\":
                        quote = True
                    else:
                        if quote and c not in '"]\\':
                            value.append("\\")
                        elif not quote and c == "]":
                            return -1
                        value.append(c)
                        quote = False
                    pos += 1
                if pos >= n:
                    return -1
                pos += 1  # closing quote
                found[key] = "".join(value)
            elif pos < n:
                start = pos
                while pos < n and text[pos] not in " ]":
                    pos += 1
                found[key] = text[start:pos]
            else:
                return -1
            if text.startswith(" ]", pos):
                pos += 1
        if pos >= n:
            return -1
        pos += 1  # "]"
        if pos < n and text[pos] == "[":
            pos += 1
            if pos < n and text[pos] == " ":
                pos += 1
            continue
        pairs.update(found)
        return pos


def _compat_column(text: str, pos: int, max_length: int):
    """syslog-ng's _syslog_format_parse_column: (value or None, new position)."""
    space = text.find(" ", pos)
    if space < 0:
        return None, len(text)
    value = text[pos:space]
    if value == "-":
        return None, space
    return value[:max_length], space


def _parse_rfc5424_compat(text: str, tags: list, time_zone):
    """syslog-ng's lenient RFC 5424 reader; (pairs, pri, timestamp) or None where it errs."""
    m = _abnf.compat_header.match(text)
    if m is None:
        return None
    pri = int(m.group(1))
    if pri > 191:
        return None
    pos = m.end() + 1  # the SP after VERSION (checked by the regex)
    n = len(text)
    if text.startswith("-", pos):
        timestamp = None
        pos += 1
        tags.append(TAG_MISSING_TIMESTAMP)
    else:
        stamp = _iso_stamp(text, pos, time_zone)
        if stamp is None:
            return None
        timestamp, pos = stamp
    if not text.startswith(" ", pos):
        return None
    pos += 1
    pairs = {}
    host, pos = _hostname(text, pos)
    if not text.startswith(" ", pos):
        return None
    pos += 1
    if host is not None and host != "-":
        pairs["HOST"] = host
    for name, max_length in (("PROGRAM", 48), ("PID", 128), ("MSGID", 32)):
        value, pos = _compat_column(text, pos, max_length)
        if value:
            pairs[name] = value
        if not text.startswith(" ", pos):
            return None
        pos += 1
    if pos < n and text[pos] in "-[":
        pos = _compat_sd(text, pos, pairs)
        if pos < 0:
            return None
    if pos < n:
        if text[pos] != " ":
            return None
        pos += 1
        if text.startswith(_BOM, pos):
            pos += 1
    pairs["MESSAGE"] = text[pos:]
    return pairs, pri, timestamp
