"""syslogsrc: a Twisted-based network ingest framework for AxoSyslog / syslog-ng.

The public API, importable from here:

* :class:`~syslogsrc.source.SyslogSource` — the ready-made source,
  ``python(class("syslogsrc.SyslogSource"))``;
* :class:`~syslogsrc.source.TwistedSource` — the base class of your own Twisted-based sources;
* :class:`~syslogsrc.service.SyslogService` and :class:`~syslogsrc.service.SourceService` — the
  same outside the daemon;
* :class:`~syslogsrc.host.SourceHost` — run any ``LogSource`` the way syslog-ng does (and
  :mod:`syslogsrc.testing` to test one);
* :func:`~syslogsrc.parsing.parse`, :class:`~syslogsrc.framing.FrameDecoder` — the sans-IO core;
* :class:`~syslogsrc.options.ListenerOptions`, :class:`~syslogsrc.interfaces.IMessageSink`,
  :class:`~syslogsrc.interfaces.Origin` — for protocol users.

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
