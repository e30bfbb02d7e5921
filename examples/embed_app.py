"""Embedding syslogsrc in a Twisted application.

A tiny application that receives syslog over TCP and UDP on the loopback and keeps a count of
messages per program, printing each message as it comes and the totals when it stops::

    python examples/embed_app.py --port 5514

``SyslogService`` is an ordinary ``IService``: put it into your own ``MultiService`` (or the
``application`` of a ``.tac`` file), hand it a callable or an ``IMessageSink``, and the listeners
run on your reactor.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

from twisted.application.service import MultiService
from twisted.internet import reactor as global_reactor

from syslogsrc.interfaces import Origin
from syslogsrc.parsing import ParsedMessage
from syslogsrc.service import SyslogService


class ProgramCounter:
    """The application's own logic: a sink callable."""

    def __init__(self, out=sys.stdout) -> None:
        self.per_program: collections.Counter[str] = collections.Counter()
        self.out = out

    def __call__(self, message: ParsedMessage, origin: Origin) -> None:
        program = message.pairs.get("PROGRAM", "-")
        if isinstance(program, bytes):
            program = program.decode("utf-8", "replace")
        self.per_program[program] += 1
        line = {
            "program": program,
            "message": _text(message.pairs.get("MESSAGE", "")),
            "pri": message.pri,
            "transport": origin.transport,
            "peer": origin.peer_host,
        }
        print(json.dumps(line), file=self.out, flush=True)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def main(argv: list[str] | None = None, reactor=global_reactor) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5514, help="TCP and UDP port (default 5514)")
    args = parser.parse_args(argv)

    counter = ProgramCounter()
    app = MultiService()
    listen = [f"tcp:{args.port}:interface=127.0.0.1", f"udp:{args.port}:interface=127.0.0.1"]
    SyslogService(listen, counter, reactor=reactor).setServiceParent(app)

    def totals() -> None:
        print(json.dumps({"totals": dict(counter.per_program)}), flush=True)

    reactor.callWhenRunning(app.startService)
    reactor.addSystemEventTrigger("before", "shutdown", app.stopService)
    reactor.addSystemEventTrigger("after", "shutdown", totals)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
