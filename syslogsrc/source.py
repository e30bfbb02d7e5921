"""Twisted inside a syslog-ng Python source.

:class:`TwistedSource` is the base of every Twisted-based source. A subclass says what to listen
on (:meth:`TwistedSource.listeners`, given the reactor); the base does the rest, following the
contracts of the design card:

1. ``run()`` runs in a daemon thread that is not the main one; ``request_exit()``, ``init()`` and
   ``deinit()`` come from the main thread; every protocol callback, and so every
   ``post_message()``, runs in the ``run()`` thread.
2. Each ``run()`` makes a fresh reactor (never the global one: that cannot run twice in a
   process, and syslog-ng calls ``run()`` again after every reload), runs it without signal
   handlers, closes every listener and connection before returning and releases the reactor's
   epoll and waker descriptors. ``request_exit()`` before or during start-up still ends ``run()``.
3. Flow control is non-blocking: the class defines ``suspend()``/``wakeup()``; on ``suspend()``
   every producer pauses and nothing more is posted; ``wakeup()`` arrives from another thread and
   resumes through ``callFromThread``.
4. Features are asked of ``syslogsrc.runtime.FEATURES``, never assumed.

The same class also runs attached to a reactor that someone else runs (twistd, an application):
:meth:`TwistedSource.attach` and :meth:`TwistedSource.detach`, with no extra thread.

:class:`SyslogSource` is the ready-made source for configurations::

    python(class("syslogsrc.SyslogSource")
           options("listen" "tcp:5514:interface=127.0.0.1 udp:5514:interface=127.0.0.1"));

This module is the public name of these classes; the code lives in private modules, one job
each:

* :mod:`syslogsrc._twisted_source`: ``TwistedSource``'s lifecycle (``run()``, ``attach()``);
* :mod:`syslogsrc._posting`: its ``post()`` and the daemon's flow control;
* :mod:`syslogsrc._source_handover`: what a reload hands over;
* :mod:`syslogsrc._building`: one message into a ``LogMessage``;
* :mod:`syslogsrc._syslog_source`: ``SyslogSource`` and ``SourceOptions``;
* :mod:`syslogsrc._daemon_builders`: the per-origin builders of the daemon's parser;
* :mod:`syslogsrc._daemon_time`: the daemon's clock and stamps;
* :mod:`syslogsrc._logbridge`: Twisted's log into the daemon's;
* :mod:`syslogsrc._reactors`: the reactor of one ``run()``.
"""

from __future__ import annotations

# TAGS_PAIR, DEFAULT_LISTEN, PARSERS and parse_time_zone are importable from here too (tools
# and tests use them); each is documented where it is declared.
from syslogsrc._logmsg import TAGS_PAIR as TAGS_PAIR
from syslogsrc._syslog_source import SourceOptions, SyslogSource
from syslogsrc._twisted_source import TwistedSource
from syslogsrc.optiontable import DEFAULT_LISTEN as DEFAULT_LISTEN
from syslogsrc.optiontable import PARSERS as PARSERS
from syslogsrc.optiontable import parse_time_zone as parse_time_zone

__all__ = ["SourceOptions", "SyslogSource", "TwistedSource"]
