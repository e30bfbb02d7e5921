"""An example custom source: plain text lines on a TCP port, each line one message.

What a subclass of :class:`syslogsrc.TwistedSource` writes, and nothing else: its options
(:meth:`configure`), what it listens on (:meth:`listeners`) and how a line becomes a message
(:meth:`build_message`). The base class runs the reactor in the daemon's thread, pauses the
listener when the daemon's window is full, and closes batches, sockets and the reactor.

In syslog-ng (this file in a directory on the daemon's PYTHONPATH, see docs/syslog-ng.md)::

    source s_lines {
        python(class("custom_source.LineSource")
               options("port" "5516" "interface" "127.0.0.1" "site" "lab-1"));
    };

Each line becomes MESSAGE, unparsed, with the pair ``example.site`` (the ``site`` option) and
``example.length`` (the line's length in bytes); PROGRAM is ``lines``.

``crash-on`` is there to show what happens when your code raises: a line equal to its value makes
:meth:`build_message` raise. The exception is logged in the daemon's log (rate-limited, with the
traceback), that one line is dropped and counted, and the source keeps serving. The tests use it
(tests/test_integration_lifecycle.py).
"""

from __future__ import annotations

from typing import Any

from syslogsrc import TwistedSource
from syslogsrc.listen import make_listener, parse_spec
from syslogsrc.options import ListenerOptions, OptionError


class LineSource(TwistedSource):
    """Lines on a TCP port. Options: ``port`` (default 5516), ``interface`` (default
    127.0.0.1), ``site`` (default empty), ``crash-on`` (default: none)."""

    def configure(self, options: dict[str, Any]) -> None:
        # Options come as strings from 3.x and may be typed in 4.2+: convert, check, and raise
        # OptionError naming the option; init() then fails with that message in the daemon's log.
        opts = {str(k).replace("_", "-"): v for k, v in options.items()}
        unknown = set(opts) - {"port", "interface", "site", "crash-on"}
        if unknown:
            name = sorted(unknown)[0]
            raise OptionError(name, opts[name], "is not an option of LineSource")
        try:
            self.port = int(str(opts.get("port", 5516)))
        except ValueError:
            raise OptionError("port", opts["port"], "must be a port number") from None
        self.interface = str(opts.get("interface", "127.0.0.1"))
        self.site = str(opts.get("site", ""))
        crash_on = opts.get("crash-on")
        self.crash_on = None if crash_on is None else str(crash_on).encode()
        # syslogsrc's own listener spec parser validates port and address
        self.spec = parse_spec(f"tcp:{self.port}:interface={self.interface}")
        # TRANSPORT of every message (set_transport_name() in 4.5+, a pair before)
        self.transport_name = "tcp"

    @staticmethod
    def generate_persist_name(options: dict[str, Any]) -> str:
        # Two LineSources in one configuration need different names (syslog-ng refuses to
        # start otherwise); the port tells them apart.
        return f"LineSource({options.get('port', 5516)})"

    def listeners(self, reactor: Any) -> list[Any]:
        # Frames are LF-terminated lines; make_listener gives connection limits, idle timeouts,
        # flow control and the per-listener counters of the built-in listeners.
        options = ListenerOptions(framing="lf", max_message_size=8192)
        return [make_listener(self.spec, reactor, self, options)]

    def build_message(self, frame: bytes, origin: Any) -> Any:
        # Called once per line, in order, with the connection's Origin (peer, transport, ...).
        if self.crash_on is not None and frame == self.crash_on:
            raise ValueError(f"LineSource was told to crash on {frame!r}")
        # The base class makes the message (MESSAGE = the frame) and adds where it came from.
        msg = super().build_message(frame, origin)
        msg["PROGRAM"] = "lines"
        msg["example.site"] = self.site
        msg["example.length"] = str(len(frame))
        return msg
