"""Run any ``LogSource`` class the way syslog-ng does, without syslog-ng.

The steps and threads are the daemon's (§1.2 of the API reference): instantiate, persist name,
``init(options)`` in the controlling thread, ``run()`` in a thread of its own, ``request_exit()``
from the controlling thread, wait for ``run()``, ``deinit()``. A reload is a stop and a start of a
*new* instance, as in the daemon. Posted messages go to an output thread that writes each one and
then acknowledges it, so a slow output pushes back through the window (``log-iw-size``).

As a library::

    with SourceHost(SyslogSource, {"listen": "tcp:5514:interface=127.0.0.1"}) as host:
        ...
        host.messages  # what was delivered (when no output was given)

As a command (:mod:`syslogsrc._host_cli`)::

    syslogsrc-host syslogsrc.SyslogSource -o listen=tcp:5514:interface=127.0.0.1 --output -
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from syslogsrc import emulation
from syslogsrc._emulated_acks import AckTracker
from syslogsrc._host_cli import main
from syslogsrc._host_cli import make_parser as make_parser  # the command line, for its tests
from syslogsrc.emulation import LogMessage, LogSource, ParseOptions, SourceDriver
from syslogsrc.outputs import Output

__all__ = ["SourceHost", "SourceInitError", "init_source", "main", "persist_name_of"]

_log = logging.getLogger("syslogsrc.host")


class SourceInitError(RuntimeError):
    """The source could not be started: its ``init()`` returned False or raised."""


def normalise_options(options: dict[str, Any]) -> dict[str, Any]:
    """Option keys as the daemon hands them to ``init()``: ``-`` becomes ``_``."""
    return {str(k).replace("-", "_"): v for k, v in options.items()}


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _finalize(source: Any) -> None:
    """The daemon's last call to an instance it frees, if the class has it."""
    finalize = getattr(source, "finalize", None)
    if finalize is None:
        return
    try:
        finalize()
    except Exception:
        _log.exception("Exception while calling finalize()")


def persist_name_of(
    source: Any, source_class: type, options: dict[str, Any], persist_name: str | None = None
) -> str:
    """The driver's ``persist_name`` as the daemon makes it: ``persist-name()``, else what the
    source's ``generate_persist_name(options)`` returns, else the class's full name."""
    if persist_name:
        return f"python-source.{persist_name}"
    generate = getattr(source, "generate_persist_name", None)
    if generate is not None:
        try:
            name = generate(normalise_options(options))
            if isinstance(name, bytes):
                name = name.decode()
            if isinstance(name, str):
                return f"python-source.{name}"
            _log.error("generate_persist_name() must return str or bytes, not %r", name)
        except Exception:
            _log.exception("Exception while calling generate_persist_name()")
    return f"python-source({_class_name(source_class)})"


def init_source(
    source: Any, driver: SourceDriver, options: dict[str, Any], *, parse_format: str = "auto"
) -> None:
    """What the daemon does between a source's ``__init__`` and its ``run()``: shared by
    :class:`SourceHost` and ``twistd syslogsrc`` (which attaches the source to its reactor
    instead of running it), so that a source sees the same in both.

    ``auto_close_batches`` is reset, ``init()`` gets the options (keys with ``_``), the ack
    tracker is checked, ``parse_options`` is given (``LogMessage.parse`` needs it: without it a
    source can neither keep a negative UTC offset nor parse natively) and the driver reads
    ``auto_close_batches``. Raises :class:`SourceInitError`.
    """
    name = _class_name(type(source))
    source.auto_close_batches = True  # the daemon resets it right after __init__
    try:
        ok = source.init(normalise_options(options))
    except Exception as exc:
        _log.exception("Exception while calling %s.init()", name)
        raise SourceInitError(f"Python source {name}: init() raised {exc!r}") from exc
    if not ok:
        raise SourceInitError(f"Python source {name}: init() returned FALSE")
    tracker = source.ack_tracker
    if tracker is not None and not isinstance(tracker, AckTracker):
        source.deinit()
        raise SourceInitError(f"{name}: ack_tracker must be an AckTracker instance")
    source.parse_options = ParseOptions(parse_format)
    driver.auto_close_batches = bool(source.auto_close_batches)


class _Consumer:
    """The output side: writes each posted message, then acknowledges it (frees its slot)."""

    _STOP = object()

    def __init__(self, output: Output | None, messages: list[LogMessage]) -> None:
        self.output = output
        self.messages = messages
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="syslogsrc-output", daemon=True)
        self.thread.start()

    def put(self, msg: LogMessage, driver: SourceDriver) -> None:
        self.queue.put((msg, driver))

    def batch(self) -> None:
        pass  # each message is written as it comes; flushing happens when the queue is idle

    def _loop(self) -> None:
        q = self.queue
        while True:
            item = q.get()
            if item is self._STOP:
                break
            msg, driver = item
            if msg is None:  # a drain() marker
                driver.ack(None)
                continue
            try:
                if self.output is None:
                    self.messages.append(msg)
                else:
                    self.output.write(msg)
                    if q.empty():
                        self.output.flush()
            except BaseException as exc:  # keep acking: a broken output must not hang the source
                if self.error is None:
                    _log.exception("output failed; messages are being lost")
                self.error = exc
            driver.ack(msg)
        if self.output is not None:
            self.output.flush()

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every message queued so far was written and acknowledged."""
        done = threading.Event()
        self.queue.put((None, _Marker(done)))
        done.wait(timeout)

    def close(self) -> None:
        self.queue.put(self._STOP)
        self.thread.join()
        if self.output is not None:
            self.output.close()


class _Marker:
    """A fake (msg, driver) entry whose "ack" tells :meth:`_Consumer.drain` it was reached."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done

    def ack(self, _msg: Any) -> None:
        self.done.set()


class SourceHost:
    """Runs one ``LogSource`` class like syslog-ng does; a context manager (start/stop).

    :param source_class: the ``LogSource`` subclass (what ``class()`` names in a config).
    :param options: what ``options()`` would give; keys may use ``-`` or ``_``.
    :param log_iw_size: the source's window (syslog-ng's default is 100).
    :param output: where posted messages go (see :mod:`syslogsrc.outputs`); ``None`` keeps
        them in :attr:`messages`.
    :param state_dir: where the persist file lives (``None``: no persistence across hosts).
    :param persist_name: the driver's ``persist-name()``.
    :param keep_hostname: syslog-ng's ``keep-hostname()``: by default HOST is replaced by the
        sender's address, as in the daemon.
    :param parse_format: what ``LogMessage.parse`` uses (the daemon's threaded-source default
        tries RFC 5424 first, then RFC 3164: ``"auto"``).
    """

    def __init__(
        self,
        source_class: type,
        options: dict[str, Any] | None = None,
        *,
        log_iw_size: int = 100,
        output: Output | None = None,
        state_dir: str | None = None,
        persist_name: str | None = None,
        keep_hostname: bool = False,
        parse_format: str = "auto",
        stop_timeout: float | None = 30.0,
    ) -> None:
        self.source_class = source_class
        self.options = normalise_options(options or {})
        self.log_iw_size = log_iw_size
        self.output = output
        self.state_dir = state_dir
        self.persist_name_option = persist_name
        self.keep_hostname = keep_hostname
        self.parse_format = parse_format
        self.stop_timeout = stop_timeout
        #: the messages posted and delivered, when there is no ``output``
        self.messages: list[LogMessage] = []
        self.source: Any = None
        self.driver: SourceDriver | None = None
        self.run_error: BaseException | None = None
        self.reloads = 0
        self._consumer: _Consumer | None = None
        self._run_thread: threading.Thread | None = None
        self._totals = {"posted": 0, "dropped": 0, "acked": 0, "batches": 0, "suspends": 0}

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> SourceHost:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _persist_name(self, source: Any) -> str:
        return persist_name_of(source, self.source_class, self.options, self.persist_name_option)

    def start(self) -> None:
        """Instantiate, ``init()``, and start ``run()`` in its own thread."""
        if self.source is not None:
            raise RuntimeError("already started")
        cls = self.source_class
        name = _class_name(cls)
        try:
            source = cls()
        except Exception as exc:
            raise SourceInitError(
                f"Error instantiating Python driver class {name}: {exc!r}"
            ) from exc
        if not isinstance(source, LogSource):
            raise SourceInitError(f"{name} is not a subclass of syslogng.LogSource")
        for required in ("run", "request_exit"):
            if not callable(getattr(source, required, None)):
                raise SourceInitError(f"{name} has no {required}() method")
        if (
            emulation._persist_store is None
            or emulation._persist_store.path != self._persist_path()
        ):
            emulation._persist_store = emulation._PersistStore(self._persist_path())
        if self._consumer is None:
            self._consumer = _Consumer(self.output, self.messages)
        consumer = self._consumer
        try:
            driver = SourceDriver(
                source,
                log_iw_size=self.log_iw_size,
                consumer=lambda msg: consumer.put(msg, driver),
                on_batch=consumer.batch,
                persist_name=self._persist_name(source),
                keep_hostname=self.keep_hostname,
            )
        except TypeError as exc:
            raise SourceInitError(f"{name}: {exc}") from exc
        init_source(source, driver, self.options, parse_format=self.parse_format)
        self.source, self.driver, self.run_error = source, driver, None
        started = threading.Event()

        def run() -> None:
            driver.run_thread = threading.get_ident()
            started.set()
            try:
                source.run()
            except BaseException as exc:  # the daemon logs it and the source stays dead
                self.run_error = exc
                _log.exception("Exception while calling %s.run(); the source stays down", name)
            lost = driver.run_returned()
            if lost and self.run_error is None:
                self.run_error = RuntimeError(
                    f"{name}.run() returned with {lost} messages in an unclosed batch"
                )

        self._run_thread = threading.Thread(target=run, name=f"python-source {name}", daemon=True)
        self._run_thread.start()
        started.wait()

    def _persist_path(self) -> str | None:
        if not self.state_dir:
            return None
        os.makedirs(self.state_dir, exist_ok=True)  # else the first Persist write fails in init()
        return os.path.join(self.state_dir, "syslog-ng.persist.json")

    def stop(self, timeout: float | None = None) -> None:
        """``request_exit()``, wait for ``run()``, deliver what was posted, ``deinit()``,
        ``finalize()``."""
        _finalize(self._stop(timeout))

    def _stop(self, timeout: float | None = None) -> Any:
        """:meth:`stop` but ``finalize()``: the stopped instance, or None."""
        source, driver = self.source, self.driver
        if source is None or driver is None:
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        source.request_exit()
        driver.request_exit()
        if driver.nonblocking and driver.suspended:
            source.wakeup()  # 4.x wakes a suspended source while it is asked to exit
        assert self._run_thread is not None
        self._run_thread.join(timeout)
        if self._run_thread.is_alive():
            # syslog-ng would wait forever here; a host that hangs helps nobody
            raise RuntimeError(
                f"{_class_name(self.source_class)}.run() did not return within {timeout} s "
                "of request_exit()"
            )
        assert self._consumer is not None
        self._consumer.drain()
        tracker = source.ack_tracker
        if isinstance(tracker, AckTracker):
            tracker._close()
        try:
            source.deinit()
        except Exception:
            _log.exception("Exception while calling deinit()")
        for key in self._totals:
            self._totals[key] += driver.stats[key]
        self.source = self.driver = None
        self._run_thread = None
        return source

    def close(self) -> None:
        """Stop, and close the output."""
        self.stop()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def reload(self) -> None:
        """What SIGHUP does to the daemon: stop this instance, start a new one; the old one
        is finalized after the new one's ``init()``, as the daemon does (the new one may take
        over what the old one left, see syslogsrc.handover)."""
        old = self._stop()
        self.reloads += 1
        try:
            self.start()
        finally:
            _finalize(old)

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
    ) -> bool:
        """Poll ``predicate`` until true or ``timeout`` (a test helper)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    @property
    def running(self) -> bool:
        return self._run_thread is not None and self._run_thread.is_alive()

    @property
    def stats(self) -> dict[str, Any]:
        """Posted, dropped, acknowledged messages, batches and suspends since the host was made,
        plus the window now and the number of reloads."""
        out = dict(self._totals)
        if self.driver is not None:
            for key in out:
                out[key] += self.driver.stats[key]
            out["window_free"] = self.driver.free
        out["window_size"] = self.log_iw_size
        out["reloads"] = self.reloads
        return out


if __name__ == "__main__":
    sys.exit(main())
