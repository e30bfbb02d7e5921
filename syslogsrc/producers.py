"""The producers of a sink, paused and resumed together (every sink has such a set).

A sink registers the ``IPushProducer`` of each connection, datagram port or HTTP site that posts
to it, pauses them all when it cannot take more and resumes them when it can again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ProducerSet"]


class ProducerSet:
    """The producers of a sink, paused and resumed together. A resume starts with a different
    producer each time, so that one busy connection cannot take all the room every time."""

    def __init__(self) -> None:
        self.producers: list[Any] = []
        self.paused = False
        self._next = 0

    def register(self, producer: Any) -> None:
        self.producers.append(producer)
        if self.paused:
            producer.pauseProducing()

    def unregister(self, producer: Any) -> None:
        try:
            self.producers.remove(producer)
        except ValueError:
            pass

    def pause(self) -> None:
        self.paused = True
        for producer in list(self.producers):
            producer.pauseProducing()

    def resume(self, still_paused: Callable[[], bool] | None = None) -> None:
        """Resume every producer, unless ``still_paused()`` says the sink paused again on the
        way (the producers after that one stay paused)."""
        self.paused = False
        producers = self.producers
        if not producers:
            return
        start = self._next % len(producers)
        self._next += 1
        for producer in producers[start:] + producers[:start]:
            if self.paused or (still_paused is not None and still_paused()):
                break
            producer.resumeProducing()

    def stop(self) -> None:
        """Stop every producer for good (they count what they still hold as dropped)."""
        producers, self.producers = self.producers, []
        for producer in producers:
            producer.stopProducing()
