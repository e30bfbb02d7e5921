"""The syslog grammars as regular expressions (sans-IO; stdlib only).

RFC 5424 section 6 pieces carry the ABNF rule they implement, quoted above them, in the style of
h11's ``_abnf.py``; the pieces are then composed into one compiled regex for the whole header so
that the common case is a single ``match()`` call.  All patterns work on ``str`` (frames are
decoded with ``surrogateescape``), so they spell out ASCII classes instead of ``\\d``/``\\s``.

RFC 3164 has no grammar to speak of; its pieces follow what syslog-ng's lenient parser accepts
(``modules/syslogformat/syslog-format.c`` and ``lib/timeutils/scan-timestamp.c``), named after the
stamp styles seen in the wild.
"""

import re

# ---------------------------------------------------------------------------------------------
# RFC 5424 section 6
# ---------------------------------------------------------------------------------------------

# SP              = %d32
SP = " "

# NILVALUE        = "-"
NILVALUE = "-"

# PRINTUSASCII    = %d33-126
PRINTUSASCII = r"[!-~]"

# PRI             = "<" PRIVAL ">"
# PRIVAL          = 1*3DIGIT ; range 0 .. 191
# (the range is checked in code: the regex only keeps the digits)
PRIVAL = r"[0-9]{1,3}"
PRI = rf"<({PRIVAL})>"

# VERSION         = NONZERO-DIGIT 0*2DIGIT
# (`auto` only takes "1" for RFC 5424, see looks_like_rfc5424; an explicit rfc5424 takes any)
VERSION = r"[1-9][0-9]{0,2}"

# DATE-FULLYEAR   = 4DIGIT
# DATE-MONTH      = 2DIGIT  ; 01-12
# DATE-MDAY       = 2DIGIT  ; 01-28, 01-29, 01-30, 01-31 based on month/year
# FULL-DATE       = DATE-FULLYEAR "-" DATE-MONTH "-" DATE-MDAY
FULL_DATE = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"

# TIME-HOUR       = 2DIGIT  ; 00-23
# TIME-MINUTE     = 2DIGIT  ; 00-59
# TIME-SECOND     = 2DIGIT  ; 00-59
TIME_HOUR = r"(?:[01][0-9]|2[0-3])"
TIME_MINUTE = r"[0-5][0-9]"
TIME_SECOND = r"[0-5][0-9]"

# TIME-SECFRAC    = "." 1*6DIGIT
TIME_SECFRAC = r"\.[0-9]{1,6}"

# PARTIAL-TIME    = TIME-HOUR ":" TIME-MINUTE ":" TIME-SECOND [TIME-SECFRAC]
PARTIAL_TIME = rf"{TIME_HOUR}:{TIME_MINUTE}:{TIME_SECOND}(?:{TIME_SECFRAC})?"

# TIME-NUMOFFSET  = ("+" / "-") TIME-HOUR ":" TIME-MINUTE
# TIME-OFFSET     = "Z" / TIME-NUMOFFSET
TIME_NUMOFFSET = rf"[+-]{TIME_HOUR}:{TIME_MINUTE}"
TIME_OFFSET = rf"(?:Z|{TIME_NUMOFFSET})"

# FULL-TIME       = PARTIAL-TIME TIME-OFFSET
# TIMESTAMP       = NILVALUE / FULL-DATE "T" FULL-TIME
# (captured whole: CPython's C fromisoformat() reads it faster than anything built from parts)
TIMESTAMP = rf"(?:{NILVALUE}|({FULL_DATE}T{PARTIAL_TIME}{TIME_OFFSET}))"

# HOSTNAME        = NILVALUE / 1*255PRINTUSASCII
# APP-NAME        = NILVALUE / 1*48PRINTUSASCII
# PROCID          = NILVALUE / 1*128PRINTUSASCII
# MSGID           = NILVALUE / 1*32PRINTUSASCII
# (NILVALUE is itself one PRINTUSASCII, so each is a plain run; "-" is told apart in code)
HOSTNAME = rf"({PRINTUSASCII}{{1,255}})"
APP_NAME = rf"({PRINTUSASCII}{{1,48}})"
PROCID = rf"({PRINTUSASCII}{{1,128}})"
MSGID = rf"({PRINTUSASCII}{{1,32}})"

# HEADER          = PRI VERSION SP TIMESTAMP SP HOSTNAME
#                   SP APP-NAME SP PROCID SP MSGID
HEADER = rf"{PRI}{VERSION}{SP}{TIMESTAMP}{SP}{HOSTNAME}{SP}{APP_NAME}{SP}{PROCID}{SP}{MSGID}"

# SD-NAME         = 1*32PRINTUSASCII
#                   ; except '=', SP, ']', %d34 (")
SD_NAME = r"[!#-<>-\\^-~]{1,32}"

# SD-ID           = SD-NAME
# PARAM-NAME      = SD-NAME
SD_ID = SD_NAME
PARAM_NAME = SD_NAME

# PARAM-VALUE     = UTF-8-STRING ; characters '"', '\' and
#                                ; ']' MUST be escaped.
# (a backslash may precede any character; only \" \\ \] are escapes, see unescape_param_value;
# written as an unrolled loop, which the re engine runs several times faster than an alternation)
PARAM_VALUE = r'[^"\\\]]*(?:\\.[^"\\\]]*)*'

# SD-PARAM        = PARAM-NAME "=" %d34 PARAM-VALUE %d34
SD_PARAM = rf'{PARAM_NAME}="{PARAM_VALUE}"'

# SD-ELEMENT      = "[" SD-ID *(SP SD-PARAM) "]"
SD_ELEMENT = rf"\[{SD_ID}(?:{SP}{SD_PARAM})*\]"

# STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
STRUCTURED_DATA = rf"({NILVALUE}|(?:{SD_ELEMENT})+)"

# SYSLOG-MSG      = HEADER SP STRUCTURED-DATA [SP MSG]
# MSG             = MSG-ANY / MSG-UTF8
# MSG-ANY         = *OCTET ; not starting with BOM
# MSG-UTF8        = BOM UTF-8-STRING
SYSLOG_MSG = rf"{HEADER}{SP}{STRUCTURED_DATA}(?:{SP}(.*))?"

#: The whole RFC 5424 message in one match.  Groups: 1 PRIVAL, 2 TIMESTAMP (None when nil),
#: 3 HOSTNAME, 4 APP-NAME, 5 PROCID, 6 MSGID, 7 STRUCTURED-DATA, 8 MSG (None when absent).
syslog_msg = re.compile(SYSLOG_MSG, re.DOTALL)

#: The SD-IDs and SD-PARAMs of a STRUCTURED-DATA that ``syslog_msg`` already validated, in one
#: ``findall``: each token is (SD-ID, "", "") or ("", PARAM-NAME, PARAM-VALUE).
sd_token = re.compile(rf'\]?\[([^ \]]+)|{SP}([^=]+)="({PARAM_VALUE})"', re.DOTALL)

# The escapes of PARAM-VALUE: '"', '\' and ']' after a backslash; any other backslash is kept.
_param_escape = re.compile(r'\\(["\\\]])')


def unescape_param_value(value: str) -> str:
    """Undo the three escapes of RFC 5424 PARAM-VALUE (``\\"``, ``\\\\``, ``\\]``)."""
    if "\\" not in value:
        return value
    return _param_escape.sub(r"\1", value)


#: BOM = %xEF.BB.BF, as it looks after decoding (UTF-8 or surrogateescape alike).
BOM = "\ufeff"

#: What `auto` takes for RFC 5424: ``<PRI>1 `` at the start.
looks_like_rfc5424 = re.compile(rf"<{PRIVAL}>1 ")

# ---------------------------------------------------------------------------------------------
# RFC 3164 as syslog-ng reads it (lenient)
# ---------------------------------------------------------------------------------------------

# PRI: "<" digits ">" (syslog-ng reads digits up to ">"; a missing PRI is fine).
legacy_pri = re.compile(r"<([0-9]{0,3})>")

# Cisco IOS sequence number "52: " before the stamp; kept as .SDATA.meta.sequenceId.
cisco_sequence_id = re.compile(r"([0-9]*): ")

# Month abbreviations, case-insensitive as in syslog-ng's scan_month_abbrev().
MONTH = r"(?i:(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec))"
MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}

# Fractions of a second: "." or "," (Aruba) and any number of digits (first six are used).
SECFRAC = r"(?:[.,]([0-9]*))?"

# ISO 8601 / RFC 3339 stamp, "T" or SP between date and time, offset optional
# ("YYYY-MM-DDTHH:MM:SS[.frac][Z|+hh:mm]").
ISO_STAMP = (
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    + SECFRAC
    + r"(Z|[+-][0-9]{2}:[0-9]{2}(?![0-9]))?"
)
iso_stamp = re.compile(ISO_STAMP)

# Cisco PIX/ASA: "Mmm dd yyyy hh:mm:ss" followed by ":" or SP.
pix_stamp = re.compile(
    MONTH + r" ([ 0-9][0-9]) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?=[: ])"
)

# LinkSys: "Mmm dd hh:mm:ss yyyy" followed by white space.
linksys_stamp = re.compile(
    MONTH + r" ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})(?=[ \t\n\r\f\v])"
)

# BSD: "Mmm dd hh:mm:ss" (day padded with SP or 0), or "Mmm d hh:mm:ss", with optional fraction.
bsd_stamp = re.compile(MONTH + r" ( ?[0-9]|[0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})" + SECFRAC)

# The common shape in one match, "<PRI>Mmm dd hh:mm:ss host prog[pid]: ", for speed; anything
# else goes the long way, step by step.  The host has no ":" (no IPv6 heuristic needed) and is not
# a 4-digit year (that would be a LinkSys stamp).  Groups: 1 PRI, 2-6 stamp, 7 HOST, 8 PROGRAM,
# 9 PID.
legacy_common = re.compile(
    r"<([0-9]{1,3})>"
    + MONTH
    + r" ( [1-9]|[0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) "
    + r"(?![0-9]{4} )([^ \[:]{1,255}) ([^ \[:]+)(?:\[([^ \]:]*)\])?: "
)

# The same with an ISO stamp, "<PRI>YYYY-MM-DDTHH:MM:SS[.frac][offset] host prog[pid]: " (rsyslog's
# forwarding format, loggen's default). Groups: 1 PRI, 2 the stamp, 3-10 its parts as in iso_stamp,
# 11 HOST, 12 PROGRAM, 13 PID.
legacy_iso_common = re.compile(
    r"<([0-9]{1,3})>(" + ISO_STAMP + r") ([^ \[:]{1,255}) ([^ \[:]+)(?:\[([^ \]:]*)\])?: "
)

# An IPv6-looking hostname: hex groups of at most 4 digits and at most 7 colons.
ipv6ish = re.compile(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,7}")

# ---------------------------------------------------------------------------------------------
# RFC 5424 as syslog-ng reads it (the lenient second chance)
# ---------------------------------------------------------------------------------------------

# "<" digits ">" VERSION, VERSION read as a number that must be 1, then SP.
compat_header = re.compile(r"<([0-9]{1,3})>0*1(?= )")
