"""The examples run, so that they cannot rot.

- ``examples/custom_source.py``: its options are checked, and it serves lines, in the emulation
  (no daemon needed) and, with examples/ on the daemon's PYTHONPATH as docs/syslog-ng.md says,
  in both real daemons as part of the example configuration.
- ``examples/syslog-ng.conf``: loaded as it is, except for the ``@version`` line (the daemon's
  own), the ports (free ones instead of 5514, 8080, 5516) and the output directory (the state
  dir instead of /var/log/syslogsrc); every source receives from a real client.
"""

from __future__ import annotations

import re
import socket
import sys
import time

import pytest
from daemons import CHECKOUT, CHROOT_CHECKOUT, CHROOT_DEPS, free_port
from integration import JsonOutput, curl_post, loggen, send_tcp, send_udp

from syslogsrc import OptionError
from syslogsrc.host import SourceHost

EXAMPLES = CHECKOUT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from custom_source import LineSource  # noqa: E402


@pytest.mark.parametrize(
    "options,named",
    [({"port": "eighty"}, "port"), ({"colour": "red"}, "colour"), ({"port": "70000"}, "listen")],
)
def test_custom_source_checks_its_options(options, named):
    with pytest.raises(OptionError) as excinfo:
        LineSource().configure(options)
    assert excinfo.value.option == named


def test_custom_source_in_the_emulation():
    port = free_port()
    options = {"port": str(port), "site": "lab-1", "crash-on": "boom"}
    with SourceHost(LineSource, options, keep_hostname=True) as host:
        deadline = time.monotonic() + 10
        while True:
            try:
                send_tcp(port, [b"first", b"boom", b"second"])
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        while len(host.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    got = [(m["MESSAGE"], m["example.site"], m["example.length"]) for m in host.messages]
    assert got == [(b"first", b"lab-1", b"5"), (b"second", b"lab-1", b"6")]


def _example_config(syslog_ng, ports: dict[str, int]) -> str:
    text = (EXAMPLES / "syslog-ng.conf").read_text()
    text, n = re.subn(
        r"^@version: \S+$", f"@version: {syslog_ng.daemon.config_version}", text, flags=re.M
    )
    assert n == 1
    for old in ports:
        assert re.search(rf"\b{old}\b", text), old
    # one pass, so that a new port containing an old one is not replaced again
    pattern = r"\b(" + "|".join(str(old) for old in ports) + r")\b"
    text = re.sub(pattern, lambda m: str(ports[int(m.group(1))]), text)
    assert "/var/log/syslogsrc/" in text
    return text.replace("/var/log/syslogsrc/", "@STATE@/")


def _pythonpath(syslog_ng) -> str:
    """The daemon's PYTHONPATH (checkout, dependencies) with examples/ added, as a user would."""
    if syslog_ng.daemon.root:
        return f"{CHROOT_CHECKOUT}:{CHROOT_DEPS}:{CHROOT_CHECKOUT}/examples"
    return f"{CHECKOUT}:{syslog_ng.daemon.deps_dir()}:{EXAMPLES}"


def test_example_configuration_in_the_daemon(syslog_ng):
    syslog_port, http_port, lines_port = free_port("both"), free_port(), free_port()
    config = _example_config(syslog_ng, {5514: syslog_port, 8080: http_port, 5516: lines_port})
    d = syslog_ng(
        config,
        wait_ports=[syslog_port, ("udp", syslog_port), http_port, lines_port],
        env={"PYTHONPATH": _pythonpath(syslog_ng)},
    )
    out = JsonOutput(d.state_dir / "messages.json")

    proc = loggen("-i", "-S", "-P", "-n", "100", "-r", "10000", "127.0.0.1", str(syslog_port))
    assert proc.returncode == 0, proc.stderr
    send_udp(syslog_port, [b"<13>Jan  2 03:04:05 udphost app[1]: over udp"])
    status, _ = curl_post(f"http://127.0.0.1:{http_port}/", b"<13>1 - web app - - - no token")
    assert status == 401
    status, body = curl_post(
        f"http://127.0.0.1:{http_port}/",
        b"<13>1 2026-01-02T03:04:05Z web app 7 - - over http",
        {"Authorization": "Bearer change-me", "User-Agent": "example-test"},
    )
    assert status == 200, body
    with socket.create_connection(("127.0.0.1", lines_port), timeout=10) as s:
        s.sendall(b"a plain line\n")

    records = out.wait(103)
    by_message = {r["MESSAGE"]: r for r in records}
    assert sum(r.get("PROGRAM") == "prg00000" for r in records) == 100
    assert by_message["over udp"]["HOST"] == "udphost"
    http = by_message["over http"]
    assert (http["HOST"], http["PID"], http["http"]["header"]["user-agent"]) == (
        "web",
        "7",
        "example-test",
    )
    line = by_message["a plain line"]
    assert (line["PROGRAM"], line["example"]["site"]) == ("lines", "lab-1")
    assert d.stop() == 0
    assert "Error" not in d.stderr(), d.stderr()
