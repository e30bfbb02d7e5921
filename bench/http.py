"""HTTP ingest: NDJSON bodies of 1000 lines, syslogsrc against a plain twisted.web resource.

Run by hand from the checkout's root (see docs/benchmarks.md)::

    python bench/http.py [--duration 10] [--runs 3] [--connections 2]

``wrk`` (one thread, ``--connections`` keep-alive connections) POSTs the same body again and
again: 1000 NDJSON lines of ~300 bytes each (``Content-Type: application/x-ndjson``).

* ``syslogsrc``: ``twistd -n syslogsrc --listen http:PORT --output FILE`` (each line is checked
  as a JSON object, handed to the source, parsed into name-value pairs, written as JSON lines by
  the writer thread); ``--log-iw-size 20000`` so that a 1000-line body does not fill the window
  by itself (with a full window the listener answers 503 and wrk counts a non-2xx response).
* ``plain``: a ``twisted.web`` resource doing the same work the simple way: split the body,
  ``json.loads`` each line, ``json.dumps`` it with the peer's address, one buffered write per
  line, answer 200 (``python bench/http.py --serve-plain PORT OUT``).

The figure is lines stored divided by the wall time from wrk's start to the last line stored;
the ratio is against ``plain`` in the same round. Without wrk, a Python client (http.client,
``--connections`` threads) stands in, and says so.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

LINES = 1000
WINDOW = 20_000


def body() -> bytes:
    """1000 NDJSON lines of ~300 bytes each."""
    out = []
    for i in range(LINES):
        doc = {
            "host": f"web{i % 20:02d}.example.net",
            "program": "nginx",
            "pid": 1000 + i % 50,
            "severity": "info",
            "http": {"method": "GET", "status": 200, "bytes": 512 + i},
            "message": f"request {i:06d} "
            + "GET /api/v1/items?page=3 HTTP/1.1 200 curl/8.5.0 upstream=10.0.0.7:8080 " * 2,
        }
        line = json.dumps(doc, separators=(",", ":"))
        out.append(line[:298] + '"}' if len(line) > 300 else line)
    text = "\n".join(out) + "\n"
    for line in text.splitlines():
        json.loads(line)  # every line is an object
    return text.encode()


# --------------------------------------------------------------------------------------------
# the plain receiver


def plain_resource(out):
    """The plain receiver's resource: what a user would write by hand, writing to ``out``."""
    from twisted.web import resource

    class Ingest(resource.Resource):
        isLeaf = True

        def render_POST(self, request) -> bytes:
            peer = request.getClientAddress().host
            count = 0
            for line in request.content.read().split(b"\n"):
                if line.strip():
                    doc = json.loads(line)
                    doc["peer"] = peer
                    out.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
                    count += 1
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"status": "ok", "messages": count}).encode()

    return Ingest()


def serve_plain(port: int, out_path: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.web import server

    out = open(out_path, "ab", buffering=1024 * 1024)
    site = server.Site(plain_resource(out))
    site.noisy = False
    reactor.listenTCP(port, site, interface="127.0.0.1")
    LoopingCall(out.flush).start(0.5)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
    out.close()


# --------------------------------------------------------------------------------------------
# clients


def run_wrk(port: int, body_path: Path, seconds: float, connections: int) -> dict[str, object]:
    script = body_path.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/x-ndjson"\n'
        f'local f = io.open("{body_path}", "rb")\n'
        "wrk.body = f:read(\"*a\")\nf:close()\n"
    )  # fmt: skip
    proc = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", str(script),
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds * 3 + 30, check=False,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "client": "wrk",
        "requests": int(m.group(1)),
        "seconds": secs,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_python_client(port: int, data: bytes, seconds: float, connections: int) -> dict:
    import http.client

    counts = [0] * connections
    bad = [0] * connections
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            conn.request("POST", "/", data, {"Content-Type": "application/x-ndjson"})
            resp = conn.getresponse()
            resp.read()
            counts[i] += 1
            if resp.status >= 300:
                bad[i] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "client": "python http.client",
        "requests": sum(counts),
        "seconds": time.monotonic() - t0,
        "non_2xx": sum(bad),
    }


# --------------------------------------------------------------------------------------------


def measure(name: str, data: bytes, seconds: float, connections: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    port = C.free_port()
    out = workdir / "out.jsonl"
    log = open(workdir / "receiver.log", "wb")
    if name == "syslogsrc":
        argv = C.twistd_command(
            "-l", str(workdir / "twistd.log"), "syslogsrc", "--listen",
            f"http:{port}:interface=127.0.0.1", "--output", str(out),
            "--log-iw-size", str(WINDOW),
        )  # fmt: skip
    else:
        argv = [sys.executable, __file__, "--serve-plain", str(port), str(out)]
    proc = subprocess.Popen(
        argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env=C.checkout_env(),
    )  # fmt: skip
    try:
        C.wait_listening(port, "tcp", proc.pid)
        body_path = workdir / "body.ndjson"
        body_path.write_bytes(data)
        cpu0 = C.cpu_seconds(proc.pid)
        t0 = time.monotonic()
        if shutil.which("wrk"):
            client = run_wrk(port, body_path, seconds, connections)
        else:
            client = run_python_client(port, data, seconds, connections)
        lines, changed = C.wait_settled(lambda: C.count_lines(out), quiet=2.0, poll=0.5)
        cpu = C.cpu_seconds(proc.pid) - cpu0
    finally:
        C.stop_process(proc)
        log.close()
    lines = max(lines, C.count_lines(out))
    wall = max(changed - t0, client["seconds"])
    accepted = (client["requests"] - client["non_2xx"]) * LINES
    result = {
        "rate": lines / wall if wall else 0.0,
        "lines": lines,
        "accepted_lines": accepted,
        "wall_seconds": round(wall, 2),
        "cpu_us_per_line": 1e6 * cpu / lines if lines else None,
        "load": round(C.loadavg(), 2),
        **client,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--name", default="http", help="results file: build/bench/NAME.json")
    ap.add_argument("--serve-plain", nargs=2, metavar=("PORT", "OUT"))
    ap.add_argument(
        "--code", type=Path, default=None, help="run this other checkout's syslogsrc (before/after)"
    )
    args = ap.parse_args(argv)
    if args.code:
        C.CODE = args.code.resolve()
    if args.serve_plain:
        serve_plain(int(args.serve_plain[0]), args.serve_plain[1])
        return 0
    data = body()
    machine = C.machine()
    C.header(
        "HTTP NDJSON ingest: syslogsrc vs a plain twisted.web resource",
        machine,
        f"{args.runs} rounds x {args.duration:g} s; bodies of {LINES} lines, {len(data)} bytes;"
        f" {'wrk' if shutil.which('wrk') else 'python client'} -c{args.connections}",
    )
    started = time.monotonic()
    workroot = Path(tempfile.mkdtemp(prefix="bench-http-"))
    runs: dict[str, list[dict]] = {"plain": [], "syslogsrc": []}
    try:
        for round_no in range(args.runs):
            order = ["plain", "syslogsrc"] if round_no % 2 == 0 else ["syslogsrc", "plain"]
            for name in order:
                r = measure(name, data, args.duration, args.connections, workroot / name)
                runs[name].append(r)
                print(
                    f"[{round_no + 1}/{args.runs}] {name:10} {C.krate(r['rate']):>6} lines/s"
                    f" stored ({r['requests']} requests, {r['non_2xx']} not 2xx, "
                    f"load {r['load']})",
                    flush=True,
                )
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "rate": C.summary([r["rate"] for r in rs]),
            "cpu_us_per_line": C.summary([r["cpu_us_per_line"] for r in rs]),
            "ratio": C.paired_ratios([r["rate"] for r in rs], [r["rate"] for r in runs["plain"]]),
        }
    elapsed = time.monotonic() - started
    data_out = {
        "machine": machine,
        "params": {
            "duration_s": args.duration,
            "runs": args.runs,
            "lines_per_body": LINES,
            "body_bytes": len(data),
            "connections": args.connections,
            "window": WINDOW,
            "elapsed_s": round(elapsed),
        },
        "runs": runs,
        "summary": summary,
    }
    print()
    print(
        C.markdown_table(
            ["receiver", "lines/s", "range", "x plain", "CPU us/line"],
            [
                [
                    name,
                    C.krate(s["rate"]["median"]),
                    f"{C.krate(s['rate']['min'])}-{C.krate(s['rate']['max'])}",
                    C.spread(s["ratio"]),
                    f"{s['cpu_us_per_line']['median']:.1f}",
                ]
                for name, s in summary.items()
            ],
        )
    )
    path = C.save_results(args.name, data_out)
    print(f"\nresults: {path}; took {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
