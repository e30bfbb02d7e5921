"""``syslogsrc-host``, the command line of :class:`~syslogsrc.host.SourceHost`: load a
``LogSource`` class by name, run it with the options given, write what it posts to an output.
Its flags other than ``-o`` come from :mod:`syslogsrc.optiontable` (as twistd's). Exported by
:mod:`syslogsrc.host` (``syslogsrc-host`` is ``syslogsrc.host:main``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from syslogsrc import optiontable
from syslogsrc.optiontable import OptionError
from syslogsrc.outputs import open_output

__all__ = ["main", "make_parser"]

_log = logging.getLogger("syslogsrc.host")


def _load_class(path: str) -> type:
    module, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep:
        raise SystemExit(f"syslogsrc-host: {path!r} is not module.Class")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"syslogsrc-host: cannot load {path}: {exc}") from exc


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _parsed_by(declared: optiontable.Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return declared.parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = declared.name  # argparse names the type in its errors
    return parse


def make_parser() -> argparse.ArgumentParser:
    """``syslogsrc-host``'s command line."""
    parser = argparse.ArgumentParser(
        prog="syslogsrc-host",
        description="Run a syslog-ng Python LogSource class outside syslog-ng.",
    )
    parser.add_argument(
        "source_class", help="module.Class of the LogSource, e.g. syslogsrc.SyslogSource"
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="an options() entry (repeatable)",
    )
    for declared in optiontable.OPTIONS:  # --output, --log-iw-size, ...: as twistd's
        if "host" in declared.drivers:
            default = declared.default_text()
            parser.add_argument(
                f"--{declared.name}",
                type=_parsed_by(declared),
                default=declared.default,
                # a bare boolean flag (--keep-hostname) says yes
                **({"nargs": "?", "const": True} if declared.kind == "bool" else {}),
                help=declared.help + ("" if default is None else f" (default: {default})"),
            )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``syslogsrc-host``: run the class until SIGINT or SIGTERM; SIGHUP reloads it (a new
    instance, as the daemon's reload makes). Returns the exit status."""
    # syslogsrc.host imports this module for its own names: SourceHost is looked up at call time
    from syslogsrc.host import SourceHost, SourceInitError

    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    cls = _load_class(args.source_class)
    host = SourceHost(
        cls,
        dict(args.option),
        log_iw_size=args.log_iw_size,
        output=open_output(args.output, args.output_format, non_utf8=args.output_non_utf8),
        state_dir=args.state_dir,
        keep_hostname=args.keep_hostname,
    )
    stop = threading.Event()
    reload = threading.Event()

    def on_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    def on_hup(_signum: int, _frame: Any) -> None:
        reload.set()
        stop.set()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        host.start()
    except SourceInitError as exc:
        print(f"syslogsrc-host: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            host.close()
        return 1
    try:
        while True:
            # With a timeout: a signal the kernel hands to another of our threads sets Python's
            # flag but does not wake a main thread blocked in a lock, so the handler would wait
            # for the next wakeup (SIGTERM after SIGHUP hung 1 run in 8 on a busy machine).
            while not stop.wait(0.2):
                pass
            stop.clear()
            if reload.is_set():
                reload.clear()
                _log.info("SIGHUP: reloading %s", args.source_class)
                try:
                    host.reload()
                except SourceInitError as exc:
                    print(f"syslogsrc-host: reload failed: {exc}", file=sys.stderr)
                    return 1
                continue
            break
    finally:
        host.close()
    return 1 if host.run_error is not None else 0
