"""Pieces every device here uses: signals that read a driver on the session clock, and statuses
that complete when a condition has held on that clock."""

from __future__ import annotations

from typing import Callable

from ophyd import Signal, SignalRO
from ophyd.status import DeviceStatus, Status

from labctl.clock import Clock


class ReadbackSignal(SignalRO):
    """A read-only signal whose every ``get()`` asks the driver, stamped with the session clock.

    Parameters
    ----------
    reader : str
        Name of the parent device's method that returns the value in SI units.
    units : str
        Unit of the value, recorded in the data key.
    """

    def __init__(self, *, reader: str, units: str, **kwargs):
        super().__init__(value=0.0, **kwargs)
        self._reader = reader
        self._units = units

    def get(self, **kwargs):
        """Measure now; a reader may return ``(value, timestamp)`` when the value is older than now."""
        value = getattr(self.parent, self._reader)()
        value, stamp = value if isinstance(value, tuple) else (value, self.parent.clock.now())
        self._readback = float(value)
        self._metadata["timestamp"] = stamp
        return self._readback

    def describe(self):
        description = super().describe()
        description[self.name]["units"] = self._units
        return description


class ClockSignal(Signal):
    """A soft signal whose timestamps come from the session clock (for last-measured values)."""

    def __init__(self, *, units: str = "", **kwargs):
        super().__init__(**kwargs)
        self._units = units

    def put(self, value, **kwargs):
        kwargs.setdefault("timestamp", self.root.clock.now())
        super().put(value, **kwargs)

    def describe(self):
        description = super().describe()
        if self._units:
            description[self.name]["units"] = self._units
        return description


def finished_status() -> Status:
    """Return a status that is already done: for steps that complete as they are asked."""
    status = Status()
    status.set_finished()
    return status


def status_when(
    device,
    clock: Clock,
    condition: Callable[[], bool],
    *,
    period: float,
    hold: float = 0.0,
    timeout: float | None = None,
    what: str = "condition",
) -> DeviceStatus:
    """Return a status that finishes once ``condition()`` has been true for ``hold`` seconds.

    The condition is checked every ``period`` seconds on ``clock``, so on the virtual clock it
    completes as simulated time passes and on the wall clock as real time does. After
    ``timeout`` seconds the status fails with a ``TimeoutError`` saying what was awaited.
    """
    status = DeviceStatus(device)
    start = clock.now()
    since: list[float | None] = [None]

    def check() -> None:
        if status.done:
            return
        now = clock.now()
        if condition():
            since[0] = now if since[0] is None else since[0]
            if now - since[0] >= hold:
                status.set_finished()
                return
        else:
            since[0] = None
        if timeout is not None and now - start >= timeout:
            status.set_exception(TimeoutError(f"{device.name}: {what} not reached within {timeout:g} s"))
            return
        clock.call_at(now + period, check)

    check()
    return status
