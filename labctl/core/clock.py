"""The session clock: virtual in simulation, the wall clock on real hardware.

Every simulated instrument reads the same clock, data timestamps come from it, and in simulation
the RunEngine's ``sleep`` advances it (see :func:`labctl.session.make_run_engine`), so an overnight
plan finishes in seconds. Callbacks scheduled with :meth:`VirtualClock.call_at` run in time order
as the clock passes them; that is how device statuses complete on virtual time.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol


class Clock(Protocol):
    """What devices and simulators need of a clock."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""

    def call_at(self, when: float, callback: Callable[[], None]) -> "Scheduled":
        """Run ``callback`` once the clock reaches ``when``."""


@dataclass(order=True)
class Scheduled:
    """A callback waiting for its time; ``cancel()`` takes it off the clock."""

    when: float
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that moves only when told to.

    Parameters
    ----------
    start : float
        Initial time, seconds since the epoch (default: the wall clock at creation, so stored
        runs carry plausible dates).
    """

    is_virtual = True

    def __init__(self, start: float | None = None):
        # A whole second: sums of the same durations then round alike whatever second a run starts
        # at, so the same seed gives the same data (a fractional start changed the sub-step counts).
        self._now = float(int(time.time())) if start is None else float(start)
        self._queue: list[Scheduled] = []
        self._counter = itertools.count()
        self._lock = threading.RLock()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Scheduled:
        with self._lock:
            entry = Scheduled(float(when), next(self._counter), callback)
            heapq.heappush(self._queue, entry)
        if when <= self._now:
            self.advance(0.0)
        return entry

    def call_later(self, delay: float, callback: Callable[[], None]) -> Scheduled:
        return self.call_at(self._now + delay, callback)

    def next_event(self) -> float | None:
        """Return the time of the next scheduled callback, or None."""
        with self._lock:
            while self._queue and self._queue[0].cancelled:
                heapq.heappop(self._queue)
            return self._queue[0].when if self._queue else None

    def advance(self, seconds: float) -> None:
        """Move time forward, running every callback due on the way, in time order."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back in time (asked to advance {seconds} s)")
        target = self._now + seconds
        while True:
            with self._lock:
                due = self.next_event()
                if due is None or due > target:
                    break
                entry = heapq.heappop(self._queue)
                self._now = max(self._now, entry.when)
            entry.callback()
        self._now = target

    def advance_to(self, when: float) -> None:
        self.advance(max(0.0, when - self._now))


class WallClock:
    """The real clock, for real hardware: callbacks run on timer threads."""

    is_virtual = False

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Scheduled:
        entry = Scheduled(float(when), 0, callback)

        def fire() -> None:
            if not entry.cancelled:
                callback()

        timer = threading.Timer(max(0.0, when - time.time()), fire)
        timer.daemon = True
        timer.start()
        return entry

    def call_later(self, delay: float, callback: Callable[[], None]) -> Scheduled:
        return self.call_at(time.time() + delay, callback)
