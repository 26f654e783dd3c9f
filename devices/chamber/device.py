"""The temperature chamber as an ophyd device: setpoint, readback, and a set() that waits for stability."""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from devices.common import ReadbackSignal, status_when


class TemperatureChamber(Device):
    """A temperature chamber; ``set(kelvin)`` finishes once the readback is stable at the setpoint.

    Parameters
    ----------
    backend
        Driver with ``set_setpoint(kelvin)``, ``read_temperature()`` and a ``setpoint`` attribute
        (``devices.sim.chamber.SimChamber`` in simulation; the Modbus controllers later).
    clock
        The session clock: stability is judged on it.
    temperature_range : (float, float)
        The chamber's hardware limits, K; setpoints outside are refused before they are sent.
    band, hold : float
        Stable means within ``band`` K of the setpoint for ``hold`` seconds.
    poll : float
        How often stability is checked, s.
    name : str
        Device name.
    """

    temperature = Cpt(ReadbackSignal, reader="_read_temperature", units="K", kind="hinted")
    setpoint = Cpt(ReadbackSignal, reader="_read_setpoint", units="K", kind="normal")
    band = Cpt(Signal, value=0.5, kind="config")
    hold = Cpt(Signal, value=300.0, kind="config")

    def __init__(self, *, backend, clock, temperature_range=(233.15, 473.15), band=0.5, hold=300.0,
                 poll=5.0, timeout=4 * 3600.0, name: str, **kwargs):
        self.backend = backend
        self.clock = clock
        self.temperature_range = temperature_range
        self.poll = poll
        self.timeout = timeout
        super().__init__(name=name, **kwargs)
        self.band.put(band)
        self.hold.put(hold)

    def _read_temperature(self) -> float:
        return self.backend.read_temperature()

    def _read_setpoint(self) -> float:
        return self.backend.setpoint

    def set(self, kelvin: float) -> DeviceStatus:
        """Set the setpoint; the status finishes when the chamber is stable there."""
        low, high = self.temperature_range
        if not low <= kelvin <= high:
            raise ValueError(
                f"{self.name}: setpoint {kelvin - 273.15:.2f} degC is outside the chamber's range "
                f"{low - 273.15:.1f} to {high - 273.15:.1f} degC"
            )
        self.backend.set_setpoint(kelvin)
        band, hold = self.band.get(), self.hold.get()
        return status_when(
            self, self.clock, lambda: abs(self.backend.read_temperature() - kelvin) <= band,
            period=self.poll, hold=hold, timeout=self.timeout,
            what=f"stable at {kelvin - 273.15:.2f} degC (+/- {band:g} K for {hold:g} s)",
        )
