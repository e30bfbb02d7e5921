"""LogSource classes that more than one test module hosts (in the emulation or in SourceHost)."""

from __future__ import annotations

import threading

from syslogsrc.emulation import LogSource

__all__ = ["Idle"]


class Idle(LogSource):
    """Does nothing in run() but wait for request_exit(): run() ends exactly when asked to."""

    def __init__(self):
        super().__init__()
        self.exit = threading.Event()

    def run(self):
        self.exit.wait()

    def request_exit(self):
        self.exit.set()
