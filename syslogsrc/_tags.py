"""The tags a parser notes, the default PRI and the longest name: shared by the parsers of
:mod:`syslogsrc.parsing` (re-exported there)."""

#: The PRI of a frame that has none (user.notice), as syslog-ng's default.
DEFAULT_PRI = 13

# Tag names.  The syslog.* ones are syslog-ng's (lib/logmsg/tags.c); syslogsrc.* are ours.
TAG_MISSING_PRI = "syslog.missing_pri"
TAG_INVALID_PRI = "syslog.invalid_pri"
TAG_MISSING_TIMESTAMP = "syslog.missing_timestamp"
TAG_INVALID_HOSTNAME = "syslog.invalid_hostname"
TAG_RFC3164_MISSING_HEADER = "syslog.rfc3164_missing_header"
TAG_RFC5424_FALLBACK = "syslogsrc.rfc5424_fallback"
TAG_RAW = "syslogsrc.raw"
TAG_JSON_INVALID = "syslogsrc.json_invalid"
TAG_JSON_BAD_NAME = "syslogsrc.json_bad_name"

#: syslog-ng refuses name-value pair names longer than this (and empty ones), with an error in
#: its log for every message (lib/logmsg/nvtable's registry).
MAX_NAME_BYTES = 255
