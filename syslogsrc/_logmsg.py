"""Reading and writing a ``LogMessage`` the same way in every daemon generation.

4.x raises KeyError for an unset name and returns typed values; 3.x returns bytes, empty for an
unset name. Name-value pairs set one by one from Python land in an order of their own (see
:func:`sdata_last_first`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TAGS_PAIR", "sdata_last_first", "value_of"]

#: the pair that carries a parsed message's tags (the daemon's own tags cannot be set from Python)
TAGS_PAIR = "syslogsrc.tags"


def sdata_last_first(pairs: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    """The items of ``pairs`` in the order that makes the daemon render ``$SDATA`` as sent.

    Set one by one (not by its own parser), a ``.SDATA`` name of a new SD element goes before
    every other element, and one of a known element right after that element's last name (both
    daemons, lib/logmsg/logmsg.c ``log_msg_update_sdata_slow``): elements set first-to-last come
    out last-to-first. So the elements are set last-first, each one's params in order.
    """
    # Most messages have no SD: then nothing moves. One C-level search over the names finds out
    # (a name holding "\0.SDATA." only sends its message down the longer way).
    if "\0.SDATA." not in "\0" + "\0".join(pairs):
        return pairs.items()
    blocks: dict[str, list[tuple[str, str]]] = {}
    other: list[tuple[str, str]] = []
    for name, value in pairs.items():
        if name.startswith(".SDATA."):
            blocks.setdefault(name[: name.rindex(".")], []).append((name, value))
        else:
            other.append((name, value))
    if len(blocks) < 2:
        return other + [item for block in blocks.values() for item in block]
    return other + [item for block in reversed(blocks.values()) for item in block]


def value_of(msg: Any, name: str) -> bytes:
    """``msg[name]``, or b"" when unset (4.x raises KeyError for unset names)."""
    try:
        value = msg[name]
    except KeyError:
        return b""
    return value if isinstance(value, bytes) else str(value).encode()
