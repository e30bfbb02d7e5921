"""``twistd syslogsrc``: a standalone syslog receiver (see syslogsrc.service).

This file must stay importable without importing syslogsrc itself: twistd imports every plugin
module to list them, so the real module is named here and imported only when it is used.
"""

from twisted.application.service import ServiceMaker

syslogsrc = ServiceMaker(
    "syslogsrc",
    "syslogsrc.service",
    "Receive syslog (TCP, TLS, unix, UDP, HTTP) and write JSON lines",
    "syslogsrc",
)
