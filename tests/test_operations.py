"""docs/operations.md's examples: the systemd unit and the logrotate snippet.

The unit is always parsed here (the keys docs/operations.md relies on, and its ExecStart parsed
by twistd's own option parser, our plugin's options included); ``systemd-analyze verify`` checks
it too where systemd is installed, and ``logrotate -d`` the snippet where logrotate is.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "examples" / "syslogsrc.service"
LOGROTATE = ROOT / "examples" / "syslogsrc.logrotate"
UNIT_TWISTD = "/opt/syslogsrc/bin/twistd"  # where docs/operations.md installs it
OUTPUT_DIR = "/var/log/syslogsrc/"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat; a line ending with a
    backslash continues on the next, as systemd.syntax(7) says)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        elif not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    assert not pending, "the last line continues"
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_unit_runs_twistd_in_the_foreground_as_a_dedicated_user(unit) -> None:
    assert one(unit, "Unit", "Description")
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "User") == "syslogsrc"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"  # reopens the output
    assert "CAP_NET_BIND_SERVICE" in one(unit, "Service", "AmbientCapabilities").split()
    assert one(unit, "Service", "CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    assert one(unit, "Service", "LogsDirectory") == OUTPUT_DIR.strip("/").split("/")[-1]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_unit_execstart_is_accepted_by_twistd(unit) -> None:
    # twistd's own parser, as twistd runs it: the flags before the plugin name are twistd's,
    # the rest our plugin's (syslogsrc.service.Options, whose postOptions validates them)
    from twisted.scripts._twistd_unix import ServerOptions

    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0] == UNIT_TWISTD
    options = ServerOptions()
    options.parseOptions(argv[1:])
    assert options.subCommand == "syslogsrc"
    assert options["nodaemon"]  # systemd supervises a foreground process
    assert options["pidfile"] == ""  # and needs no pid file
    ours = options.subOptions
    assert ours["listen"] == ["tcp:514", "udp:514"]  # 514 needs CAP_NET_BIND_SERVICE
    assert ours["output"].startswith(OUTPUT_DIR)  # the LogsDirectory the snippet rotates


def _installed_twistd() -> str | None:
    beside = Path(sys.executable).parent / "twistd"
    return str(beside) if beside.exists() else shutil.which("twistd")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    twistd = _installed_twistd()
    if twistd is None:
        pytest.skip("no twistd to put in ExecStart (verify checks that it is executable)")
    text = UNIT.read_text(encoding="utf-8")
    assert UNIT_TWISTD in text
    unit = tmp_path / "syslogsrc.service"
    unit.write_text(text.replace(UNIT_TWISTD, twistd), encoding="utf-8")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    # unknown keys and bad values are only warnings (exit 0): any line about our unit fails
    about_ours = [line for line in out.splitlines() if "syslogsrc.service" in line]
    assert proc.returncode == 0 and not about_ours, out


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="no logrotate")
def test_logrotate_snippet_is_accepted(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "messages.jsonl").write_text("{}\n")
    text = LOGROTATE.read_text(encoding="utf-8")
    assert OUTPUT_DIR in text
    conf = tmp_path / "syslogsrc.logrotate"
    conf.write_text(text.replace(OUTPUT_DIR, f"{logs}/"), encoding="utf-8")
    # -d: parse and say what would be done, do nothing (no script runs); -f: rotate now
    proc = subprocess.run(
        ["logrotate", "-d", "-f", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "error" not in out.lower(), out
    assert f"renaming {logs}/messages.jsonl to {logs}/messages.jsonl.1" in out, out
    assert "running postrotate script" in out, out
    directives = [line.split()[0] for line in text.splitlines() if line.strip()[:1].isalpha()]
    assert "copytruncate" not in directives  # syslogsrc reopens on SIGHUP: rename, no copy
