"""One retry policy for every instrument driver, and one poll helper on the session clock.

Every driver (the Modbus link, the rig's line, the EC-Lab backend) meets the same faults: a
timeout, a garbled reply, a dropped connection. Each tries again the same way: a fresh
connection, a wait that doubles from ``backoff`` up to ``max_backoff``, ``attempts`` tries in
all, then one typed error naming the instrument and its address (``devices.errors``). What a
driver decides is only which failures are worth another try, how to start again fresh, and what
the final error says. No bluesky or ophyd here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from labctl.core.clock import Clock, Scheduled

log = logging.getLogger(__name__)

T = TypeVar("T")
LATE_POLL = 1.0  # s between polls once a technique's expected end has passed


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries a request gets and how long to wait between them.

    Parameters
    ----------
    attempts : int
        Tries per request, the first included.
    backoff, max_backoff : float
        First and longest wait between two tries, s; the wait doubles each time.
    """

    attempts: int = 4
    backoff: float = 0.05
    max_backoff: float = 2.0

    def __post_init__(self):
        if self.attempts < 1 or self.backoff < 0 or self.max_backoff < self.backoff:
            raise ValueError(f"retry policy: need attempts >= 1 and 0 <= backoff <= max_backoff, got {self}")

    def delays(self) -> Iterator[float]:
        """Yield the waits before the 2nd, 3rd, ... tries."""
        delay = self.backoff
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(2 * delay, self.max_backoff)

    def with_attempts(self, attempts: int) -> "RetryPolicy":
        """Return the same policy with ``attempts`` tries."""
        return RetryPolicy(attempts, self.backoff, self.max_backoff)


def retry(call: Callable[[], T], *, policy: RetryPolicy, transient: Callable[[BaseException], bool],
          give_up: Callable[[BaseException, int], BaseException], on_failure: Callable[[BaseException], None],
          sleep: Callable[[float], None], label: str) -> T:
    """Return ``call()``, trying again after each transient failure as ``policy`` says.

    Parameters
    ----------
    call : callable
        The request; it reconnects by itself if ``on_failure`` dropped the connection.
    transient : callable
        Whether an exception is worth another try; any other exception propagates at once.
    give_up : callable
        ``give_up(last_exception, attempts)`` returns the error raised after the last try.
    on_failure : callable
        Runs after every transient failure, the last included: drop the connection, so that no
        late or half reply is taken for the next one.
    sleep : callable
        How to wait (``time.sleep``; tests pass a recorder).
    label : str
        The instrument, its address and the request, for the log.
    """
    delays = policy.delays()
    while True:
        try:
            return call()
        except Exception as error:
            if not transient(error):
                raise
            on_failure(error)
            delay = next(delays, None)
            if delay is None:
                raise give_up(error, policy.attempts) from error
            log.warning("%s failed (%s); retrying in %.3g s", label, error, delay)
            sleep(delay)


def schedule_poll(clock: Clock, end: float, interval: float, callback: Callable[[], None]) -> Scheduled:
    """Schedule ``callback`` at the next look at a running measurement, on the session clock.

    Every ``interval`` until the expected ``end``, at ``end`` itself (a limit may end it earlier,
    never later than asked), then every :data:`LATE_POLL` until the instrument says it has stopped.
    """
    now = clock.now()
    when = min(now + interval, end) if now < end else now + LATE_POLL
    return clock.call_at(when, callback)


class Poller:
    """Looks at a running measurement on the session clock, as :func:`schedule_poll` times it, until told to stop.

    For a backend whose instrument has no callbacks (the EC-Lab library, the MTZ-35 link): it starts
    the poller with a measurement's expected end; each look returns whether to look again, and the
    backend stops the poller when the measurement ends another way (a stop, a lost instrument).

    Parameters
    ----------
    clock : Clock
        The session clock.
    interval : float
        Longest time between two looks before the expected end, s.
    look : callable
        Reads the instrument; returns whether the measurement still runs.
    """

    def __init__(self, clock: Clock, interval: float, look: Callable[[], bool]):
        self.clock, self.interval, self.look = clock, interval, look
        self._end = clock.now()
        self._event: Scheduled | None = None

    def start(self, end: float) -> None:
        """Look at the measurement that should end at ``end`` until a look says it has stopped."""
        self.stop()
        self._end = end
        self._schedule()

    def stop(self) -> None:
        """Look no more (the measurement ended, or was stopped)."""
        if self._event is not None:
            self._event.cancel()
            self._event = None

    def _schedule(self) -> None:
        self._event = schedule_poll(self.clock, self._end, self.interval, self._tick)

    def _tick(self) -> None:
        self._event = None
        # A look may end the measurement and, from its end callback, start the next one (and this
        # poller): then that start has scheduled the next look already.
        if self.look() and self._event is None:
            self._schedule()
