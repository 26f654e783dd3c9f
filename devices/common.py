"""Pieces every device here uses: signals that read a driver on the session clock, and statuses
that complete when a condition has held on that clock."""

from __future__ import annotations

from typing import Callable

import numpy as np
from ophyd import Signal, SignalRO
from ophyd.status import DeviceStatus as OphydDeviceStatus
from ophyd.status import Status

from labctl.core.clock import Clock


def session_clock(signal) -> Clock:
    """Return the session clock of the device ``signal`` belongs to (its root device's ``clock``)."""
    clock = getattr(signal.root, "clock", None)
    if clock is None:
        raise RuntimeError(f"{signal.name}: not part of a device with a session clock")
    return clock


def number(signal) -> float:
    """Return a numeric signal's value as a float, refusing one that holds no number."""
    value = signal.get()
    if not isinstance(value, (int, float)):
        raise TypeError(f"{signal.name} holds {value!r}, not a number")
    return float(value)


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
        value, stamp = value if isinstance(value, tuple) else (value, session_clock(self).now())
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
        kwargs.setdefault("timestamp", session_clock(self).now())
        super().put(value, **kwargs)

    def describe(self):
        description = super().describe()
        if self._units:
            description[self.name]["units"] = self._units
        return description


class DeviceStatus(OphydDeviceStatus):
    """ophyd's ``DeviceStatus``, whose text, once it has failed, is why; it leaves stopping to the plan.

    bluesky ends a run whose status failed with ``FailedStatus(status)`` and records ``str()`` of it
    as the stop reason: this makes that reason the error (which names the instrument, its address
    and what happened) instead of ``DeviceStatus(device=..., done=True, success=False)``. ophyd would
    also call the device's ``stop()`` on a failure, from its callback thread, where it would race
    the plan's own cleanup (which opens the circuit and reports if it cannot) and any error would
    only be logged; so it does not.
    """

    def __init__(self, device, **kwargs):
        super().__init__(device, call_stop_on_failure=False, **kwargs)

    def __str__(self) -> str:
        if self.done and not self.success:
            return str(self.exception(timeout=0))
        return super().__str__()


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
    ``timeout`` seconds the status fails with a ``TimeoutError`` saying what was awaited. If
    ``condition()`` raises (the instrument is lost), the status fails with that error: on the wall
    clock the check runs on a timer thread, where an exception would otherwise vanish and leave the
    status waiting until its timeout.
    """
    status = DeviceStatus(device)
    start = clock.now()
    since: list[float | None] = [None]

    def check() -> None:
        if status.done:
            return
        now = clock.now()
        try:
            met = condition()
        except Exception as error:
            status.set_exception(error)
            return
        if met:
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


def store_spectrum(meter, spectrum: dict) -> None:
    """Put a measured spectrum into an impedance device's signals, stamped with its sweep start.

    ``meter`` has ``sweep_start``, ``frequency``, ``z_real`` and ``z_imag`` signals;
    ``spectrum`` the backend's ``time`` and arrays of the same names.
    """
    stamp = spectrum["time"]
    meter.sweep_start.put(stamp, timestamp=stamp)
    for name in ("frequency", "z_real", "z_imag"):
        getattr(meter, name).put(np.asarray(spectrum[name]), timestamp=stamp)
