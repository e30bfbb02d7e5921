"""A faithful, pure-Python copy of the AxoSyslog 4.x Python *source* contract.

Outside syslog-ng there is no ``_syslogng`` C module; this module stands in for it, so that a
source written for the daemon runs and can be tested anywhere. Where the contract matters to a
source it behaves like the daemon (§1-§4 of the API reference):

* ``post_message`` is legal only from the thread running ``run()`` (``RuntimeError`` otherwise,
  with the daemon's text), takes only ``LogMessage`` (``TypeError``);
* a window of ``log-iw-size`` slots, freed when the consumer acknowledges a message;
* blocking mode (the class has no ``suspend``): a post that empties the window closes the batch
  and blocks until a slot frees or exit is requested;
* suspend/wakeup mode: a post that empties the window calls ``suspend()`` in the poster's thread;
  ``wakeup()`` comes from the consumer's thread when the window has refilled; a post while the
  window is empty is dropped with the daemon's error text and counted;
* ``close_batch()``, ``auto_close_batches`` (read after ``init()``), ``set_transport_name()``,
  ``persist_name``, ``parse_options``;
* ``LogMessage`` in typed mode: str/bytes in, bytes out, typed ints/floats/bools, ``KeyError``
  for unset names, read-only once posted.

The driving side (what syslog-ng's C code does around a source) lives in :class:`SourceDriver`,
used by :mod:`syslogsrc.host`. This module holds ``LogSource``, ``Logger`` and ``Persist`` and
exports the rest from private modules, one part of the daemon each: ``LogMessage`` and
``ParseOptions`` (:mod:`syslogsrc._emulated_message`), the ack trackers
(:mod:`syslogsrc._emulated_acks`), ``SourceDriver`` and the daemon's error texts
(:mod:`syslogsrc._emulated_driver`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from syslogsrc import _emulated_driver, _emulated_message
from syslogsrc._emulated_acks import (
    AckTracker,
    BatchedAckTracker,
    ConsecutiveAckTracker,
    InstantAckTracker,
)
from syslogsrc._emulated_driver import SourceDriver
from syslogsrc._emulated_message import LogMessage, ParseOptions

__all__ = [
    "BatchedAckTracker",
    "ConsecutiveAckTracker",
    "InstantAckTracker",
    "LogMessage",
    "LogSource",
    "Logger",
    "ParseOptions",
    "Persist",
    "SourceDriver",
]

# The daemon's texts, and what outputs.py reads of a message, importable from here too; each
# is declared in the module named.
THREAD_ERROR = _emulated_driver.THREAD_ERROR
BATCH_THREAD_ERROR = _emulated_driver.BATCH_THREAD_ERROR
NOT_A_MESSAGE_ERROR = _emulated_driver.NOT_A_MESSAGE_ERROR
BOOKMARK_ERROR = _emulated_driver.BOOKMARK_ERROR
MISSING_BOOKMARK_ERROR = _emulated_driver.MISSING_BOOKMARK_ERROR
DROP_ERROR = _emulated_driver.DROP_ERROR
READ_ONLY_ERROR = _emulated_message.READ_ONLY_ERROR
FACILITIES = _emulated_message.FACILITIES
SEVERITIES = _emulated_message.SEVERITIES
_normal_ip = _emulated_message._normal_ip

_log = logging.getLogger("syslogng")

# --------------------------------------------------------------------------------------------
# Logger and Persist


class Logger:
    """``syslogng.Logger``: the daemon's internal log; here, Python ``logging`` ("syslogng")."""

    def error(self, message: str) -> None:
        _log.error(message)

    def warning(self, message: str) -> None:
        _log.warning(message)

    def info(self, message: str) -> None:
        _log.info(message)

    def debug(self, message: str) -> None:
        _log.debug(message)

    def trace(self, message: str) -> None:
        _log.log(5, message)


class _PersistStore:
    """The emulated ``syslog-ng.persist`` file: one JSON document in the host's state dir."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.values: dict[str, Any] = {}
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.values = {k: _decode_persist(v) for k, v in json.load(f).items()}

    def save(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({k: _encode_persist(v) for k, v in self.values.items()}, f)
        os.replace(tmp, self.path)


def _encode_persist(v: Any) -> Any:
    return {"bytes": v.hex()} if isinstance(v, bytes) else v


def _decode_persist(v: Any) -> Any:
    return bytes.fromhex(v["bytes"]) if isinstance(v, dict) else v


#: set by the host while a source is initialised or running; Persist refuses to work without it
_persist_store: _PersistStore | None = None


class Persist:
    """``syslogng.Persist``: a dict-like view of the persist file, keys ``<name>##<key>``."""

    def __init__(self, persist_name: str, defaults: dict[str, Any] | None = None) -> None:
        if _persist_store is None:
            raise RuntimeError("Persist can only be used in or after init()")
        if "##" in persist_name:
            raise ValueError("persist_name must not contain '##'")
        self._name = persist_name
        self._store = _persist_store
        for key, value in (defaults or {}).items():
            if key not in self:
                self[key] = value

    @property
    def persist_name(self) -> str:
        return self._name

    def _full(self, key: str) -> str:
        return f"{self._name}##{key}"

    def __getitem__(self, key: str) -> Any:
        with self._store.lock:
            return self._store.values[self._full(key)]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, str | int | bytes) or isinstance(value, bool):
            raise TypeError("value must be str, int or bytes")
        with self._store.lock:
            self._store.values[self._full(key)] = value
            self._store.save()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._full(key) in self._store.values

    def __iter__(self) -> Iterator[str]:
        prefix = self._name + "##"
        with self._store.lock:
            keys = [k[len(prefix) :] for k in self._store.values if k.startswith(prefix)]
        return iter(keys)


# --------------------------------------------------------------------------------------------
# LogSource and what drives it


class LogSource:
    """``syslogng.LogSource`` as in AxoSyslog 4.x: subclass it, define ``run`` and
    ``request_exit`` (and ``init``/``deinit``; ``suspend`` + ``wakeup`` for non-blocking flow
    control). The daemon side is attached by :class:`~syslogsrc.emulation.SourceDriver`."""

    #: set by the driver after init() (the daemon's capsule)
    parse_options: ParseOptions | None = None

    def __init__(self) -> None:
        # Python-level attributes a subclass may set; the driver reads them at the daemon's steps
        self.auto_close_batches = True
        self.ack_tracker: AckTracker | None = None
        self.flags: dict[str, bool] = {}

    def init(self, options: dict[str, Any]) -> bool:
        return True

    def deinit(self) -> None:
        pass

    def run(self) -> None:
        raise NotImplementedError

    def request_exit(self) -> None:
        raise NotImplementedError

    @property
    def persist_name(self) -> str:
        driver = self.__dict__.get("_driver")
        return driver.persist_name if driver is not None else ""

    def _require_driver(self) -> SourceDriver:
        driver = self.__dict__.get("_driver")
        if driver is None:
            raise RuntimeError("this LogSource is not attached to syslog-ng or a SourceHost")
        return driver

    def post_message(self, msg: LogMessage) -> None:
        self._require_driver().post(msg)

    def close_batch(self) -> None:
        self._require_driver().close_batch()

    def set_transport_name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError("transport name must be a str")
        self._require_driver().transport_name = name
