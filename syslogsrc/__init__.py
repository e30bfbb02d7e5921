"""syslogsrc: a Twisted-based network ingest framework for AxoSyslog / syslog-ng.

The public API, importable from here:

* :class:`SyslogSource` — the ready-made source, ``python(class("syslogsrc.SyslogSource"))``;
* :class:`TwistedSource` — the base class of your own Twisted-based sources;
* :class:`SyslogService` and :class:`SourceService` — the same outside the daemon;
* :class:`SourceHost` — run any ``LogSource`` the way syslog-ng does;
* :func:`parse`, :class:`FrameDecoder` — the sans-IO core;
* :class:`ListenerOptions`, :class:`IMessageSink`, :class:`Origin` — for protocol users.

Names are imported on first use (PEP 562), so ``import syslogsrc.framing`` does not pull in
Twisted, and the daemon imports only what its configuration names.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "SyslogSource": "syslogsrc.source",
    "TwistedSource": "syslogsrc.source",
    "SourceOptions": "syslogsrc.source",
    "SyslogService": "syslogsrc.service",
    "SourceService": "syslogsrc.service",
    "SourceHost": "syslogsrc.host",
    "parse": "syslogsrc.parsing",
    "ParsedMessage": "syslogsrc.parsing",
    "FrameDecoder": "syslogsrc.framing",
    "ListenerOptions": "syslogsrc.options",
    "OptionError": "syslogsrc.options",
    "IMessageSink": "syslogsrc.interfaces",
    "Origin": "syslogsrc.interfaces",
    "ListenerStats": "syslogsrc.interfaces",
    "parse_listen": "syslogsrc.listen",
    "make_listener": "syslogsrc.listen",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'syslogsrc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
