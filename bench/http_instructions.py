"""Instructions per HTTP request of 1000 lines: syslogsrc's HTTP site against the plain one.

Run by hand from the checkout's root, under callgrind (wall-clock figures are too noisy on a
shared machine to find a few per cent)::

    valgrind --tool=callgrind --callgrind-out-file=OUT \\
        /path/to/python3.11 bench/http_instructions.py {ours,plain} {ndjson,text} REQUESTS

then ``callgrind_annotate OUT``. Run it with two request counts (say 2 and 12): the difference
of the totals divided by the difference of the counts is the cost of one request without the
start-up (imports, the reactor). The script drives REQUESTS keep-alive POSTs through the site
in-process: one connection on a ``StringTransport`` (no socket), each request fed whole, one
turn of the reactor after it (our sink hands its batch to the writer thread then), and waits
until every line is in the output file, which it checks (the line count and every status).

* ``ours``: ``HTTPIngestSite`` and ``OutputSink(JsonLinesOutput)``, as ``twistd syslogsrc
  --listen http:PORT --output FILE --log-iw-size 20000`` builds them.
* ``plain``: bench/http.py's plain resource for NDJSON; for text, the same resource writing
  ``{"MESSAGE": line, "peer": peer}`` per line (a hand-written twin has no syslog parser).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_http", Path(__file__).resolve().parent / "http.py"
)
assert _spec is not None and _spec.loader is not None
bench_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_http)  # also puts the checkout first on sys.path (_common)

from twisted.internet import reactor  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.web import resource, server  # noqa: E402

LINES = bench_http.LINES


def text_body() -> bytes:
    """1000 RFC 3164 lines of ~300 bytes each."""
    return b"".join(
        b"<%d>Dec  2 14:21:11 web%02d.example.net nginx[%d]: request %06d %s\n"
        % (
            134 + i % 3,
            i % 20,
            1000 + i % 50,
            i,
            b"GET /api/v1/items?page=3 HTTP/1.1 200 curl/8.5.0 upstream=10.0.0.7:8080 " * 3,
        )
        for i in range(LINES)
    )


def plain_text_resource(out):
    """The plain resource for text bodies: one JSON object per line, the line as MESSAGE."""

    class Ingest(resource.Resource):
        isLeaf = True

        def render_POST(self, request) -> bytes:
            peer = request.getClientAddress().host
            count = 0
            for line in request.content.read().split(b"\n"):
                if line.strip():
                    doc = {"MESSAGE": line.decode("utf-8", "replace"), "peer": peer}
                    out.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
                    count += 1
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"status": "ok", "messages": count}).encode()

    return Ingest()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("receiver", choices=("ours", "plain"))
    ap.add_argument("kind", choices=("ndjson", "text"))
    ap.add_argument("requests", type=int)
    args = ap.parse_args(argv)
    receiver, kind, requests = args.receiver, args.kind, args.requests
    data = bench_http.body() if kind == "ndjson" else text_body()
    media = b"application/x-ndjson" if kind == "ndjson" else b"text/plain"
    request = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
        % (media, len(data))
    ) + data
    workdir = Path(tempfile.mkdtemp(prefix="http-instructions-"))
    out_path = workdir / "out.jsonl"
    sink = None
    if receiver == "ours":
        from syslogsrc.interfaces import ListenerStats
        from syslogsrc.options import ListenerOptions
        from syslogsrc.outputs import JsonLinesOutput
        from syslogsrc.protocols.http import HTTPIngestSite
        from syslogsrc.sinks import OutputSink

        output = JsonLinesOutput(str(out_path))
        sink = OutputSink(output, reactor, high_water=20_000)
        site = HTTPIngestSite(reactor, sink, ListenerOptions(), ListenerStats("http"))
        out = None
    else:
        out = open(out_path, "ab", buffering=1024 * 1024)
        make = bench_http.plain_resource if kind == "ndjson" else plain_text_resource
        site = server.Site(make(out))
    site.startFactory()
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(peer)
    transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 80))
    channel.makeConnection(transport)
    answers: list[bytes] = []

    def step(done: int) -> None:
        if done == requests:
            finish()
            return
        channel.dataReceived(request)
        answers.append(transport.value())
        transport.clear()
        reactor.callLater(0, step, done + 1)

    def finish() -> None:
        if sink is not None and sink.in_flight:
            reactor.callLater(0.001, finish)
            return
        reactor.stop()

    reactor.callWhenRunning(step, 0)
    reactor.run()
    if sink is not None:
        sink.output.close()
    else:
        out.close()
    lines = sum(1 for _ in open(out_path, "rb"))
    ok = sum(1 for a in answers if a.startswith(b"HTTP/1.1 200 "))
    if lines != requests * LINES or ok != requests:
        print(f"FAILED: {lines} lines, {ok} of {requests} answered 200", file=sys.stderr)
        return 1
    print(f"{receiver} {kind}: {requests} requests, {lines} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
