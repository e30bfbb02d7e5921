"""Start real syslog-ng daemons for integration tests.

Two kinds of daemon can exist on a machine:

* ``host-X.Y``: the host's ``/usr/sbin/syslog-ng`` with ``syslog-ng-mod-python`` (Debian 12: 3.38
  embedding CPython 3.11; Debian 13: 4.8 embedding 3.13).
* ``chroot-X.Y``: syslog-ng from the Debian 13 chroot that ``tests/tools/syslog-ng4-chroot setup``
  builds (``$SYSLOGSRC_CHROOT``, default ``/var/tmp/syslogsrc-trixie``); needs root.

Each daemon runs in the foreground (``-F -e --no-caps``) with its own state dir (persist, pid and
control files, the config and its captured stderr), and with PYTHONPATH = this checkout + a
``pip install --target`` dir of the runtime dependencies built for its embedded Python
(``build/daemon-deps/py<X.Y>``, made on demand by ``tests/tools/daemon-pydeps``). The chroot
daemon sees the checkout at ``/opt/syslogsrc`` (read-only) and the deps at ``/opt/deps``; those
bind mounts live in a private mount namespace that ends with the daemon.

Nothing here depends on pytest except :func:`requires_daemon_version`, which imports it lazily.
See docs/testing.md.
"""

from __future__ import annotations

import functools
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _processes import ProcessError, kill, pending_ports, pid_file_pending, terminate, wait_ready

__all__ = [
    "CHECKOUT",
    "Daemon",
    "DaemonError",
    "DaemonStartError",
    "RunningDaemon",
    "available_daemons",
    "chroot_root",
    "ensure_deps",
    "free_port",
    "probe_daemons",
    "requires_daemon_version",
]

CHECKOUT = Path(__file__).resolve().parent.parent
TOOLS = CHECKOUT / "tests" / "tools"
DEFAULT_CHROOT = "/var/tmp/syslogsrc-trixie"
CHROOT_STAMP = ".syslogsrc-chroot"  # written by syslog-ng4-chroot setup when it is complete
HOST_SYSLOG_NG = "/usr/sbin/syslog-ng"
HOST_SYSLOG_NG_CTL = "/usr/sbin/syslog-ng-ctl"
CHROOT_CHECKOUT = "/opt/syslogsrc"
CHROOT_DEPS = "/opt/deps"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# unix socket paths (the control socket) are limited to 108 bytes
_MAX_STATE_DIR = 80
_RELOAD_DONE = "Configuration reload finished"
_RELOAD_FAILED = re.compile(r"reverting to old config|Error initializing new configuration")


class DaemonError(ProcessError):
    """A daemon misbehaved; ``stderr`` holds what it printed so far."""

    STDERR_HEADING = "syslog-ng stderr"


class DaemonStartError(DaemonError):
    """The daemon exited or did not become ready during start-up."""


def chroot_root() -> Path:
    """Where the syslog-ng 4 chroot lives: ``$SYSLOGSRC_CHROOT`` or the default."""
    return Path(os.environ.get("SYSLOGSRC_CHROOT") or DEFAULT_CHROOT)


# ---------------------------------------------------------------------------------------------
# runtime dependencies for an embedded Python


_deps_lock = threading.Lock()
_deps_ready: dict[str, Path] = {}


def ensure_deps(python_version: str) -> Path:
    """Return the deps dir for CPython ``python_version``, building it on first use.

    ``tests/tools/daemon-pydeps`` is idempotent (hash stamp) and serialised with flock, so this is
    cheap after the first build and safe with parallel test processes.
    """
    with _deps_lock:
        if python_version in _deps_ready:
            return _deps_ready[python_version]
        target = CHECKOUT / "build" / "daemon-deps" / f"py{python_version}"
        proc = subprocess.run(
            ["bash", str(TOOLS / "daemon-pydeps"), python_version, str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DaemonError(
                f"daemon-pydeps {python_version} failed (rc={proc.returncode}):\n{proc.stdout}"
            )
        _deps_ready[python_version] = target
        return target


# ---------------------------------------------------------------------------------------------
# what is installed


def _version_tuple(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return int(m.group(1)), int(m.group(2))


def _linked_python(module_so: str, ldd: list[str]) -> str | None:
    m = re.search(r"cpython-3(\d+)", os.path.basename(module_so))
    if m:
        return f"3.{m.group(1)}"
    out = subprocess.run([*ldd, module_so], capture_output=True, text=True, check=False).stdout
    m = re.search(r"libpython(\d+\.\d+)", out)
    return m.group(1) if m else None


def _probe_host() -> Daemon | str:
    if not os.access(HOST_SYSLOG_NG, os.X_OK):
        return f"no {HOST_SYSLOG_NG}: apt-get install syslog-ng-core syslog-ng-mod-python"
    modules = sorted(Path("/usr/lib/syslog-ng").glob("*/libmod-python*.so"))
    if not modules:
        return "syslog-ng has no python module: apt-get install syslog-ng-mod-python"
    out = subprocess.run(
        [HOST_SYSLOG_NG, "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"^Installer-Version:\s*(\S+)", out, re.M) or re.search(r"\((\d[\d.]*)\)", out)
    if not m:
        return f"cannot tell the version of {HOST_SYSLOG_NG}: {out!r}"
    python_version = _linked_python(str(modules[-1]), ["ldd"])
    if not python_version:
        return f"cannot tell which libpython {modules[-1]} embeds"
    version = _version_tuple(m.group(1))
    return Daemon(
        name=f"host-{version[0]}.{version[1]}",
        version=version,
        full_version=m.group(1),
        python_version=python_version,
        root=None,
    )


def _probe_chroot() -> Daemon | str:
    root = chroot_root()
    stamp = root / CHROOT_STAMP
    if not stamp.is_file() or not (root / "usr/sbin/syslog-ng").exists():
        return f"no syslog-ng 4 chroot at {root}: run `tests/tools/syslog-ng4-chroot setup {root}`"
    if os.geteuid() != 0:
        return f"the chroot daemon at {root} needs root (chroot, mount namespaces)"
    for tool in ("chroot", "unshare", "mount"):
        if not shutil.which(tool, path=_PATH):
            return f"{tool} not found (util-linux/coreutils)"
    info = dict(line.split("=", 1) for line in stamp.read_text().splitlines() if "=" in line)
    try:
        version = _version_tuple(info["syslog-ng"])
        python_version = info["python"]
    except (KeyError, ValueError):
        return f"unreadable {stamp}; rerun syslog-ng4-chroot setup"
    return Daemon(
        name=f"chroot-{version[0]}.{version[1]}",
        version=version,
        full_version=info["syslog-ng"],
        python_version=python_version,
        root=root,
    )


@functools.cache
def probe_daemons() -> tuple[tuple[Daemon, ...], dict[str, str]]:
    """Return (available daemons, {"host"|"chroot": why it is unavailable})."""
    found: list[Daemon] = []
    missing: dict[str, str] = {}
    for kind, probe in (("host", _probe_host), ("chroot", _probe_chroot)):
        result = probe()
        if isinstance(result, Daemon):
            found.append(result)
        else:
            missing[kind] = result
    return tuple(found), missing


def available_daemons() -> list[Daemon]:
    """The daemons this machine can run: the host's, and the chroot's when it is set up."""
    return list(probe_daemons()[0])


# ---------------------------------------------------------------------------------------------
# ports

_handed_out: set[int] = set()


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(kind: str = "tcp") -> int:
    """A loopback port that is free now for ``kind`` ("tcp", "udp" or "both").

    Ports come from 20000-32767, below Linux's ephemeral range, so outgoing connections made
    meanwhile cannot take them; a port is not handed out twice by one process.
    """
    kinds = {
        "tcp": [socket.SOCK_STREAM],
        "udp": [socket.SOCK_DGRAM],
        "both": [socket.SOCK_STREAM, socket.SOCK_DGRAM],
    }[kind]
    for _ in range(1000):
        port = random.randrange(20000, 32768)
        if port not in _handed_out and all(_bindable(port, k) for k in kinds):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found")


# ---------------------------------------------------------------------------------------------
# daemons


@dataclass(frozen=True)
class Daemon:
    """One kind of syslog-ng daemon available on this machine."""

    name: str  # "host-3.38", "chroot-4.8"
    version: tuple[int, int]
    full_version: str  # "3.38.1"
    python_version: str  # X.Y of the embedded CPython
    root: Path | None = None  # the chroot, None for the host's daemon

    @property
    def config_version(self) -> str:
        """What to put after ``@version:``."""
        return f"{self.version[0]}.{self.version[1]}"

    def __str__(self) -> str:
        return self.name

    def deps_dir(self) -> Path:
        return ensure_deps(self.python_version)

    def spawn(
        self,
        config_text: str,
        *,
        workdir: Path,
        wait_ports=(),
        wait_unix=(),
        timeout: float = 30,
        env: dict[str, str | None] | None = None,
        extra_args=(),
        wrapper=(),
    ) -> RunningDaemon:
        """Start the daemon with ``config_text`` and wait until it is ready.

        ``@STATE@`` in the config (and in ``wait_unix``) is replaced with the state dir as the
        daemon sees it; without an ``@version:`` line one for this daemon is prepended.
        ``wait_ports`` are TCP ports (or ("udp", port) pairs) the daemon itself must have bound;
        ``wait_unix`` are paths as the daemon sees them that must exist. ``env`` adds to (a None
        value removes from) the daemon's environment. ``wrapper`` is a command line to run the
        daemon under, inside the chroot for the chroot's (``valgrind --tool=callgrind``;
        ``@STATE@`` in it is replaced too). Raises DaemonStartError with the daemon's stderr if
        it exits or is not ready within ``timeout`` seconds.
        """
        deps = self.deps_dir()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        state_dir, link = self._make_state_dir(workdir)
        inner_state = self._inner(state_dir)

        text = config_text.replace("@STATE@", inner_state)
        if not re.search(r"^\s*@version:", text, re.M):
            text = f"@version: {self.config_version}\n{text}"
        config_path = state_dir / "syslog-ng.conf"
        config_path.write_text(text)

        daemon_env = {
            "PATH": _PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root" if self.root else os.environ.get("HOME", "/"),
            "SLNG_STATE_DIR": inner_state,
        }
        if "TZ" in os.environ:
            daemon_env["TZ"] = os.environ["TZ"]
        if self.root:
            daemon_env["PYTHONPATH"] = f"{CHROOT_CHECKOUT}:{CHROOT_DEPS}"
        else:
            daemon_env["PYTHONPATH"] = f"{CHECKOUT}:{deps}"
        for key, value in (env or {}).items():
            if value is None:
                daemon_env.pop(key, None)
            else:
                daemon_env[key] = value

        wrapped = [w.replace("@STATE@", inner_state) for w in wrapper]
        args = [
            "-F",
            "-e",
            "--no-caps",
            "-f",
            f"{inner_state}/syslog-ng.conf",
            "-R",
            f"{inner_state}/syslog-ng.persist",
            "-p",
            f"{inner_state}/syslog-ng.pid",
            "-c",
            f"{inner_state}/syslog-ng.ctl",
            *extra_args,
        ]
        if self.root:
            argv = [
                "bash",
                str(TOOLS / "syslog-ng4-chroot"),
                "run",
                str(self.root),
                "--bind",
                f"{CHECKOUT}:{CHROOT_CHECKOUT}:ro",
                "--bind",
                f"{deps}:{CHROOT_DEPS}",
                "--",
                "/usr/bin/env",
                "-i",
                *(f"{k}={v}" for k, v in daemon_env.items()),
                *wrapped,
                "/usr/sbin/syslog-ng",
                *args,
            ]
            popen_env = {"PATH": _PATH, "SYSLOGSRC_CHROOT": str(self.root)}
        else:
            argv = [*wrapped, HOST_SYSLOG_NG, *args]
            popen_env = daemon_env

        stderr_path = state_dir / "syslog-ng.stderr"
        started = time.monotonic()
        with open(stderr_path, "wb") as err:
            # the chroot tool execs down to syslog-ng, so this pid is the daemon's
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                env=popen_env,
                start_new_session=True,  # ^C in the test runner goes to pytest, not the daemon
            )
        running = RunningDaemon(
            daemon=self,
            process=proc,
            state_dir=state_dir,
            config_path=config_path,
            workdir=workdir,
            link=link,
        )
        try:
            running._wait_ready(
                wait_ports,
                [w.replace("@STATE@", inner_state) for w in wait_unix],
                timeout,
            )
        except BaseException:
            running._kill()
            running._collect()
            raise
        running.start_seconds = time.monotonic() - started
        return running

    # -- paths

    def _inner(self, host_path: Path) -> str:
        """``host_path`` as the daemon sees it."""
        host_path = Path(host_path)
        if self.root is None:
            return str(host_path)
        try:
            rel = host_path.resolve().relative_to(self.root.resolve())
        except ValueError:
            raise ValueError(f"{host_path} is outside the chroot {self.root}") from None
        return "/" + str(rel) if str(rel) != "." else "/"

    def _outer(self, daemon_path: str) -> Path:
        """A path the daemon sees, as the host sees it."""
        if self.root is None:
            return Path(daemon_path)
        return self.root / str(daemon_path).lstrip("/")

    def _make_state_dir(self, workdir: Path) -> tuple[Path, Path | None]:
        """A fresh state dir; for the chroot (or a too long workdir) under its /tmp, linked from
        workdir, and copied back into workdir when the daemon is closed."""
        n = 0
        while (workdir / f"syslog-ng-{n}").exists() or (workdir / f"syslog-ng-{n}").is_symlink():
            n += 1
        local = workdir / f"syslog-ng-{n}"
        if self.root is None and len(str(local.resolve())) <= _MAX_STATE_DIR:
            local.mkdir()
            return local, None
        tmp_root = self.root / "tmp" if self.root else Path(tempfile.gettempdir())
        state_dir = Path(tempfile.mkdtemp(prefix="slng-", dir=tmp_root))
        state_dir.chmod(0o755)
        local.symlink_to(state_dir)
        return state_dir, local


@dataclass(eq=False)
class RunningDaemon:
    """A started syslog-ng process. Stop it with :meth:`stop` (or :meth:`close`)."""

    daemon: Daemon
    process: subprocess.Popen
    state_dir: Path  # host path
    config_path: Path  # host path
    workdir: Path
    link: Path | None = None  # workdir symlink to a state dir kept elsewhere
    start_seconds: float = 0.0
    _closed: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        return self.daemon.name

    @property
    def ctl_path(self) -> Path:
        return self.state_dir / "syslog-ng.ctl"

    def path(self, host_path) -> str:
        """``host_path`` as the daemon sees it (chroot-relative for the chroot daemon)."""
        return self.daemon._inner(Path(host_path))

    def host_path(self, daemon_path: str) -> Path:
        """A path as the daemon sees it, as the host (the test) sees it."""
        return self.daemon._outer(daemon_path)

    # -- process state

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def stderr(self) -> str:
        """Everything the daemon printed so far."""
        try:
            return (self.state_dir / "syslog-ng.stderr").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_stderr(self, pattern: str, timeout: float = 10, *, after: int = 0) -> str:
        """Wait until the regex ``pattern`` matches a line of stderr (from offset ``after``);
        return that line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()[after:]
            for line in text.splitlines():
                if regex.search(line):
                    return line
            if not self.alive():
                raise DaemonError(
                    f"{self.name} exited (rc={self.returncode}) before printing {pattern!r}",
                    self.stderr(),
                )
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"{self.name} did not print {pattern!r} within {timeout}s", self.stderr()
                )
            time.sleep(0.05)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    # -- control

    def ctl(self, *args: str, timeout: float = 30) -> str:
        """Run ``syslog-ng-ctl ARGS[0] -c <ctl> ARGS[1:]`` (the daemon's own syslog-ng-ctl) and
        return its output; DaemonError if it fails."""
        if not args:
            raise ValueError("ctl needs a syslog-ng-ctl command, e.g. ctl('stats')")
        ctl_socket = self.path(self.ctl_path)
        if self.daemon.root:
            argv = ["chroot", str(self.daemon.root), "/usr/sbin/syslog-ng-ctl"]
        else:
            argv = [HOST_SYSLOG_NG_CTL]
        argv += [args[0], "-c", ctl_socket, *args[1:]]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": _PATH},
            check=False,
        )
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise DaemonError(
                f"syslog-ng-ctl {' '.join(args)} failed (rc={proc.returncode}): {out.strip()}",
                self.stderr(),
            )
        return out

    def reload(self, timeout: float = 30) -> None:
        """Reload the config (``syslog-ng-ctl reload``) and wait until the reload finished.

        Raises DaemonError if the new config was rejected (the daemon then keeps running the old
        one) or the daemon died. Edit :attr:`config_path` first to reload a different config.
        """
        before = self.stderr()
        done_before = before.count(_RELOAD_DONE)
        reply = self.ctl("reload", timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr()
            new = text[len(before) :]
            if _RELOAD_FAILED.search(new):
                raise DaemonError(f"{self.name} rejected the new config: {reply.strip()}", text)
            if text.count(_RELOAD_DONE) > done_before:
                break
            if not self.alive():
                raise DaemonError(f"{self.name} died during reload", text)
            if time.monotonic() > deadline:
                raise DaemonError(f"{self.name} reload did not finish within {timeout}s", text)
            time.sleep(0.05)
        if not self.alive():
            raise DaemonError(f"{self.name} died after reload", self.stderr())

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait and return the exit status (negative: killed by that signal).

        After ``timeout`` seconds: SIGKILL and DaemonError (a python source whose run() does not
        return hangs syslog-ng's shutdown forever).
        """
        if not terminate(self.process, timeout):
            stacks = self.backtraces()  # where it hangs, before it is gone
            self._kill()
            raise DaemonError(
                f"{self.name} (pid {self.pid}) did not stop within {timeout}s; killed",
                self.stderr() + "\n--- threads of the hung daemon (gdb) ---\n" + stacks,
            )
        return self.process.returncode

    def backtraces(self, timeout: float = 30) -> str:
        """Every thread's C backtrace (gdb, if installed): what a hung daemon waits for."""
        gdb = shutil.which("gdb")
        if gdb is None:
            return "(no gdb)"
        try:
            done = subprocess.run(
                [gdb, "-p", str(self.pid), "-batch", "-ex", "thread apply all bt 30"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(gdb failed: {exc!r})"
        return "\n".join(
            line for line in done.stdout.splitlines() if line.startswith(("#", "Thread"))
        )

    def close(self, timeout: float = 20) -> int:
        """stop(), then move a state dir kept outside the workdir into it (so nothing is left in
        the chroot's /tmp and the files stay with the test's other files)."""
        try:
            return self.stop(timeout)
        finally:
            self._collect()

    def _kill(self) -> None:
        kill(self.process)

    def _collect(self) -> None:
        if self._closed or self.link is None:
            self._closed = True
            return
        self._closed = True

        def regular_files_only(src, names):
            return [n for n in names if not (Path(src, n).is_file() or Path(src, n).is_dir())]

        self.link.unlink()
        shutil.copytree(self.state_dir, self.link, symlinks=True, ignore=regular_files_only)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir = self.link
        self.config_path = self.link / self.config_path.name

    # -- start-up

    def _wait_ready(self, wait_ports, wait_unix, timeout: float) -> None:
        tcp_ports, udp_ports = [], []
        for item in wait_ports:
            if isinstance(item, tuple):
                proto, port = item
                (udp_ports if proto == "udp" else tcp_ports).append(int(port))
            else:
                tcp_ports.append(int(item))
        pid_file = self.state_dir / "syslog-ng.pid"
        unix_paths = [self.daemon._outer(p) for p in wait_unix]

        def pending() -> list[str]:
            return pid_file_pending(pid_file) or [
                *pending_ports(self.pid, tcp_ports, udp_ports),
                *(f"unix socket {p}" for p in unix_paths if not p.exists()),
            ]

        wait_ready(
            self.process,
            self.name,
            pending,
            timeout,
            lambda message: DaemonStartError(message, self.stderr()),
        )


def requires_daemon_version(*minimum: int):
    """Marker: skip the test for daemons older than ``minimum``, e.g.
    ``@requires_daemon_version(4, 1)`` (close_batch). The ``syslog_ng`` fixture applies it."""
    import pytest

    return pytest.mark.syslog_ng_version(*minimum)


def main(argv: list[str] | None = None) -> int:
    """``python tests/daemons.py [list|prepare]``: list the daemons, or (prepare) build the deps
    dir of each and start/stop it once. Exit 1 if one fails, or, with
    SYSLOGSRC_REQUIRE_SYSLOG_NG=1, if the host or the chroot daemon is missing."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="tests/daemons.py", description=main.__doc__)
    parser.add_argument("command", choices=["list", "prepare"], nargs="?", default="list")
    args = parser.parse_args(argv)
    found, missing = probe_daemons()
    for d in found:
        where = f"chroot {d.root}" if d.root else HOST_SYSLOG_NG
        print(f"{d.name}: syslog-ng {d.full_version}, python {d.python_version} ({where})")
    for kind, reason in missing.items():
        print(f"{kind}: unavailable: {reason}")
    failed = bool(missing) and os.environ.get("SYSLOGSRC_REQUIRE_SYSLOG_NG", "") not in ("", "0")
    if args.command == "prepare":
        for d in found:
            try:
                deps = d.deps_dir()
                with tempfile.TemporaryDirectory(prefix="slng-prepare-") as workdir:
                    running = d.spawn(
                        "source s { internal(); };\n"
                        'destination d { file("@STATE@/internal.log"); };\n'
                        "log { source(s); destination(d); };\n",
                        workdir=Path(workdir),
                    )
                    rc = running.close()
                if rc != 0:
                    raise DaemonError(f"{d.name} exited with {rc}", running.stderr())
                print(f"{d.name}: ok (deps {deps}; ready in {running.start_seconds:.2f}s)")
            except DaemonError as e:
                print(f"{d.name}: FAILED: {e}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
