"""``twistd -n syslogsrc`` and the embedding example, as users run them: subprocesses on loopback
ports, fed by real clients (logger, loggen, curl), checked through the JSON lines they write."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import twistd_process
from twistd_process import ROOT, TWISTD, json_lines

from syslogsrc.testing import accepts, free_port, wait_until

twistd = twistd_process.twistd  # the fixture, for the tests below


def test_twistd_receives_from_logger_loggen_and_curl(twistd, tmp_path: Path) -> None:
    port, http = free_port(), free_port()
    out = tmp_path / "out.jsonl"
    t = twistd(
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--listen",
        f"udp:{port}:interface=127.0.0.1",
        "--listen",
        f"http:{http}:interface=127.0.0.1",
        "--output",
        str(out),
    )
    assert wait_until(lambda: accepts(port) and accepts(http)), t.logtext()
    logger = shutil.which("logger")
    if logger:
        for transport, syntax, tag, text in [
            ("-T", "--rfc5424", "tcpapp", "hello over tcp"),
            ("-d", "--rfc3164", "udpapp", "hello over udp"),
        ]:
            subprocess.run(
                [logger, "-n", "127.0.0.1", "-P", str(port), transport, syntax, "-t", tag, text],
                check=True,
                timeout=10,
            )
    loggen = shutil.which("loggen")
    if loggen:
        subprocess.run(
            [loggen, "-S", "-n", "100", "-r", "1000", "127.0.0.1", str(port)],
            check=True,
            timeout=30,
            capture_output=True,
        )
    curl = shutil.which("curl")
    if curl:
        body = "<13>Nov 24 06:00:00 web curlapp[7]: hello over http"
        subprocess.run(
            [
                curl,
                "-sf",
                "-H",
                "Content-Type: text/plain",
                "--data-binary",
                body,
                f"http://127.0.0.1:{http}/",
            ],
            check=True,
            timeout=10,
            capture_output=True,
        )
    expected = (2 if logger else 0) + (100 if loggen else 0) + (1 if curl else 0)
    assert expected, "none of logger, loggen, curl is installed"
    assert t.stop(), t.logtext()
    lines = json_lines(out)
    assert len(lines) == expected, t.logtext()
    by_program = {line.get("PROGRAM"): line for line in lines}
    if logger:
        assert by_program["tcpapp"]["MESSAGE"] == "hello over tcp"
        assert by_program["tcpapp"]["TRANSPORT"] == "tcp"
        assert by_program["udpapp"]["TRANSPORT"] == "udp"
        assert by_program["udpapp"]["SOURCEIP"] == "127.0.0.1"
    if curl:
        assert by_program["curlapp"]["HOST"] == "web"  # keep-hostname is the standalone default
        assert by_program["curlapp"]["TRANSPORT"] == "http"
    if loggen:
        assert sum(1 for line in lines if line.get("PROGRAM") == "prg00000") == 100
    # the summary at stop, per listener
    assert f"summary tcp:{port}:interface=127.0.0.1: received=" in t.logtext()


def test_twistd_default_listeners_and_text_output(twistd, tmp_path: Path) -> None:
    # The documented default: TCP and UDP 5514 on 127.0.0.1. Skip if something holds the port.
    if accepts(5514):
        pytest.skip("127.0.0.1:5514 is in use on this machine")
    out = tmp_path / "out.log"
    t = twistd("--output", str(out), "--output-format", "text")
    assert wait_until(lambda: accepts(5514)), t.logtext()
    with socket.create_connection(("127.0.0.1", 5514)) as s:
        s.sendall(b"<13>Nov 24 06:00:00 myhost myapp[42]: the text layout\n")
    assert wait_until(
        lambda: (out.exists() and out.stat().st_size > 0) or t.proc.poll() is not None
    )
    assert t.stop(), t.logtext()
    assert out.read_text() == "Nov 24 06:00:00 myhost myapp[42]: the text layout\n"


def tcp_to_json(twistd, tmp_path: Path, *flags: str) -> tuple[int, Path, twistd_process.Twistd]:
    """``twistd syslogsrc`` with one TCP listener on 127.0.0.1 writing JSON lines to
    ``tmp_path/out.jsonl``, plus ``flags``: (port, that file, the process), once the port
    accepts connections."""
    port = free_port()
    out = tmp_path / "out.jsonl"
    t = twistd("--listen", f"tcp:{port}:interface=127.0.0.1", "--output", str(out), *flags)
    assert wait_until(lambda: accepts(port)), t.logtext()
    return port, out, t


def test_sighup_reopens_the_output(twistd, tmp_path: Path) -> None:
    port, out, t = tcp_to_json(twistd, tmp_path)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"<13>Nov 24 06:00:00 h app: before rotation\n")
        assert wait_until(lambda: len(json_lines(out)) == 1)
        out.rename(tmp_path / "out.jsonl.1")  # what logrotate does
        t.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reopening the output" in t.logtext())
        s.sendall(b"<13>Nov 24 06:00:01 h app: after rotation\n")
        assert wait_until(lambda: len(json_lines(out)) == 1)
    assert t.stop(), t.logtext()
    assert json_lines(tmp_path / "out.jsonl.1")[0]["MESSAGE"] == "before rotation"
    assert json_lines(out)[0]["MESSAGE"] == "after rotation"


def test_everything_accepted_is_flushed_at_stop(twistd, tmp_path: Path) -> None:
    port, out, t = tcp_to_json(twistd, tmp_path, "--stats-interval", "0.1")
    n = 20_000
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"".join(b"<13>Nov 24 06:00:00 h app: m%d\n" % i for i in range(n)))
        # Stop the moment the source has posted everything: messages may still wait for the
        # output thread then, and they must all be written before the process exits.
        assert wait_until(lambda: f"posted={n} " in t.logtext(), timeout=30), t.logtext()
        assert t.stop(), t.logtext()
    assert [line["MESSAGE"] for line in json_lines(out)] == [f"m{i}" for i in range(n)]


def test_help_lists_every_option_with_its_default(twistd) -> None:
    proc = subprocess.run(
        [*TWISTD, "syslogsrc", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for flag in (
        "--listen",
        "--output",
        "--output-format",
        "--format",
        "--framing",
        "--max-connections",
        "--tls-peer-verify",
        "--http-token",
        "--so-rcvbuf",
        "--stats-interval",
        "--log-iw-size",
    ):
        assert flag in text
    assert "[default: 100]" in text  # max-connections
    assert "tcp:5514:interface=127.0.0.1" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--no-such-flag"], "no-such-flag"),
        (["--max-connections", "lots"], "max-connections('lots')"),
        (["--listen", "carrier-pigeon:1"], "carrier-pigeon"),
        (["--format", "xml"], "format('xml')"),
        (["--output-non-utf8", "drop"], "--output-non-utf8"),
        # a listener setting that does not apply to the listener's kind
        (["--listen", "udp:5514:framing=nul"], "framing= applies to stream kinds"),
    ],
)
def test_a_bad_flag_is_a_usage_error(args: list[str], says: str) -> None:
    proc = subprocess.run(
        [*TWISTD, "-n", "syslogsrc", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode != 0
    assert says in proc.stdout + proc.stderr


def test_embed_app_example_runs(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "embed_app.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines: list[str] = []  # the example prints (and flushes) a line per message
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def printed(n: int) -> bool:
        return sum('"message"' in line for line in list(lines)) >= n

    try:
        assert wait_until(lambda: accepts(port))
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"<13>Nov 24 06:00:00 h sshd[1]: one\n<13>Nov 24 06:00:00 h cron[2]: two\n")
        # Both listeners start together: once TCP messages are out, UDP is bound (on a busy
        # machine a fixed sleep was not always enough for the datagram to be handled).
        assert wait_until(lambda: printed(2), timeout=30)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"<13>Nov 24 06:00:00 h sshd[1]: three", ("127.0.0.1", port))
        assert wait_until(lambda: printed(3), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        reader.join(timeout=10)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert {"totals": {"sshd": 2, "cron": 1}} in records
    assert {r["message"] for r in records if "message" in r} == {"one", "two", "three"}


def test_a_stalled_output_pauses_streams_and_http_answers_503(twistd, tmp_path: Path) -> None:
    # The output is a FIFO that nobody reads for a while: the writer blocks once the pipe is
    # full, the window (100) empties, the source is suspended. TCP must lose nothing; HTTP
    # must say 503 with Retry-After, and 200 again once the output drains.
    port, http = free_port(), free_port()
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so twistd's open() does not block
    t = twistd(
        "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--listen", f"http:{http}:interface=127.0.0.1",
        "--output", str(fifo), "--log-iw-size", "100",
    )  # fmt: skip
    n = 5000
    url = f"http://127.0.0.1:{http}/"
    try:
        assert wait_until(lambda: accepts(port) and accepts(http)), t.logtext()
        sender = socket.create_connection(("127.0.0.1", port))
        sender.sendall(b"".join(b"<13>Nov 24 06:00:00 h app: m%d\n" % i for i in range(n)))

        def post() -> tuple[int, dict[str, str]]:
            req = urllib.request.Request(
                url, data=b"<13>Nov 24 06:00:00 h web: posted", method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, dict(resp.headers)
            except urllib.error.HTTPError as err:
                return err.code, dict(err.headers)

        assert wait_until(lambda: post()[0] == 503, timeout=15), t.logtext()
        status, headers = post()
        assert status == 503 and headers.get("Retry-After") == "1"
        # now drain the output
        data = bytearray()

        def got() -> list[dict]:
            try:
                while chunk := os.read(reader, 1 << 16):
                    data.extend(chunk)
            except BlockingIOError:
                pass
            complete = bytes(data).rpartition(b"\n")[0]  # the last line may still be coming
            return [json.loads(x) for x in complete.splitlines()]

        assert wait_until(
            lambda: sum(1 for r in got() if r.get("PROGRAM") == "app") == n, timeout=30
        )
        assert wait_until(lambda: post()[0] == 200, timeout=10)
        sender.close()
        assert wait_until(lambda: any(r.get("PROGRAM") == "web" for r in got()), timeout=10)
        assert [r["MESSAGE"] for r in got() if r.get("PROGRAM") == "app"] == [
            f"m{i}" for i in range(n)
        ]
    finally:
        t.stop()
        os.close(reader)


def test_stdout_carries_json_lines_only(tmp_path: Path) -> None:
    """The README's command as written: ``twistd -n syslogsrc`` with no --logfile writes its
    messages to stdout, and its own log to stderr, so ``twistd -n syslogsrc | jq`` works."""
    port = free_port()
    proc = subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "syslogsrc", "--listen", f"tcp:{port}:interface=127.0.0.1"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert wait_until(lambda: accepts(port) or proc.poll() is not None)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"".join(b"<13>Nov 24 06:00:00 h app: line %d\n" % i for i in range(5)))
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = stdout.decode().splitlines()
    assert [json.loads(line)["MESSAGE"] for line in lines] == [f"line {i}" for i in range(5)]
    assert b"Server Shut Down." in stderr, stderr
    assert b"syslogsrc" in stderr  # the summary at stop went to the log, on stderr
    jq = shutil.which("jq")
    if jq is not None:  # the real reader the README's users pipe into
        done = subprocess.run([jq, "-c", ".MESSAGE"], input=stdout, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().splitlines() == [f'"line {i}"' for i in range(5)]


def test_stats_lines_carry_every_counter(twistd, tmp_path: Path) -> None:
    port = free_port()
    t = twistd(
        "--listen",
        f"udp:{port}:interface=127.0.0.1",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--output",
        str(tmp_path / "out.jsonl"),
        "--stats-interval",
        "0.1",
    )
    assert wait_until(lambda: "stats udp:" in t.logtext()), t.logtext()
    assert t.stop(), t.logtext()
    from syslogsrc.interfaces import ListenerStats

    counters = [k for k in ListenerStats(name="x").as_dict() if k != "name"]
    for what in ("stats", "summary"):
        for kind in ("udp", "tcp"):
            line = next(
                line for line in t.logtext().splitlines() if f"{what} {kind}:{port}" in line
            )
            for counter in counters:
                assert f" {counter}=" in line, (counter, line)


@pytest.mark.parametrize("policy", ["escape", "replace"])
def test_output_of_bytes_that_are_not_utf8(twistd, tmp_path: Path, policy: str) -> None:
    flags = ["--output-non-utf8", policy] if policy != "escape" else []
    port, out, t = tcp_to_json(twistd, tmp_path, *flags)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"<13>Nov 24 06:00:00 h app: caf\xe9 \xc3\xa9t\xc3\xa9\n")
    assert wait_until(lambda: len(json_lines(out)) == 1), t.logtext()
    assert t.stop(), t.logtext()
    raw = out.read_bytes()
    message = json.loads(raw)["MESSAGE"]
    if policy == "escape":
        assert b"\\udce9" in raw
        assert message.encode("utf-8", "surrogateescape") == b"caf\xe9 \xc3\xa9t\xc3\xa9"
    else:
        raw.decode("utf-8")  # valid UTF-8, and no lone surrogate for a strict reader
        assert b"\\udc" not in raw
        assert message == "caf\ufffd été"


def test_each_listener_has_its_own_framing_and_format(twistd, tmp_path: Path) -> None:
    """One NUL-framed port for multi-line messages (Python's SysLogHandler), one LF-framed raw
    port, and the process-wide options for a third, in one receiver."""
    import logging
    import logging.handlers

    nul_port, raw_port, plain_port = free_port(), free_port(), free_port()
    out = tmp_path / "out.jsonl"
    t = twistd(
        "--listen",
        f"tcp:{nul_port}:interface=127.0.0.1:framing=nul",
        "--listen",
        f"tcp:{raw_port}:interface=127.0.0.1:framing=lf:format=raw",
        "--listen",
        f"tcp:{plain_port}:interface=127.0.0.1",
        "--format",
        "rfc3164",
        "--output",
        str(out),
    )
    assert wait_until(lambda: all(accepts(p) for p in (nul_port, raw_port, plain_port)))
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", nul_port), socktype=socket.SOCK_STREAM
    )
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # the usual idiom
    try:
        logger = logging.Logger("multiline")
        logger.addHandler(handler)
        logger.error("Traceback (most recent call last):\n  File x\nValueError: boom")
    finally:
        handler.close()
    with socket.create_connection(("127.0.0.1", raw_port)) as s:
        s.sendall(b"<13>Nov 24 06:00:00 h app: kept whole\n")
    with socket.create_connection(("127.0.0.1", plain_port)) as s:
        s.sendall(b"<13>Nov 24 06:00:00 h app: parsed\n")
    assert wait_until(lambda: len(json_lines(out)) == 3), t.logtext()
    assert t.stop(), t.logtext()
    messages = sorted(r["MESSAGE"] for r in json_lines(out))
    assert messages == sorted(
        [
            "Traceback (most recent call last):\n  File x\nValueError: boom",
            "<13>Nov 24 06:00:00 h app: kept whole",
            "parsed",
        ]
    ), messages
