"""``twistd -n syslogsrc`` as a subprocess of a test, and the JSON lines it writes.

A helper of this test suite, not of :mod:`syslogsrc.testing`: it runs the standalone service
from this checkout (``PYTHONPATH`` is the repository), which a user testing a source of their
own has no need of. Import it as ``from twistd_process import Twistd`` (tests/ is on
``sys.path``, see conftest.py); ``from twistd_process import twistd`` brings the fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the twistd command of this interpreter (the ``twistd`` script may belong to another one)
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def json_lines(path: Path) -> list[dict]:
    """The records of a JSON-lines output file; none while it does not exist yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Twistd:
    """``twistd -n syslogsrc ARGS`` started in ``tmp``, its log in ``tmp/twistd.log``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / "twistd.log"
        self.proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "-l", str(self.log), "syslogsrc", *args],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def stop(self, timeout: float = 10) -> bool:
        """SIGTERM; True when twistd shut down cleanly. twistd ends by re-raising the signal
        that stopped it (so supervisors see it), hence -SIGTERM rather than 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        return rc in (0, -signal.SIGTERM) and "Server Shut Down." in self.logtext()

    def logtext(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def twistd(tmp_path: Path) -> Iterator[Callable[..., Twistd]]:
    """Starts :class:`Twistd` instances in ``tmp_path``; kills any still running at the end."""
    started: list[Twistd] = []

    def start(*args: str) -> Twistd:
        t = Twistd(tmp_path, *args)
        started.append(t)
        return t

    yield start
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait()
