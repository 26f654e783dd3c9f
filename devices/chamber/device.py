"""The temperature chamber as an ophyd device: setpoint, readback, a set() that waits for stability and
soaks, and the lithium melting-point interlock."""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from devices.backends import ChamberBackend
from devices.common import ReadbackSignal, number, status_when
from labctl.core.clock import Clock
from labctl.core.errors import LithiumWouldMelt


class TemperatureChamber(Device):
    """A temperature chamber; ``set(kelvin, soak=seconds)`` finishes once the readback is stable at the
    setpoint and has stayed there for the soak.

    Parameters
    ----------
    backend : ChamberBackend
        The controller: a Modbus driver (``devices.chamber.controllers``) or ``devices.sim.chamber.SimChamber``.
    clock : Clock
        The session clock: stability is judged on it.
    temperature_range : (float, float)
        The chamber's hardware limits, K; setpoints outside are refused before they are sent.
    band, hold : float
        Stable means within ``band`` K of the setpoint for ``hold`` seconds.
    contains_lithium : bool
        Whether the cell in the chamber has lithium metal in it; while true, setpoints at or above
        lithium's melting point are refused (:class:`labctl.core.errors.LithiumWouldMelt`). True unless
        told otherwise: the experiment runner sets it from the cell metadata.
    poll : float
        How often stability is checked, s.
    name : str
        Device name.
    """

    temperature = Cpt(ReadbackSignal, reader="_read_temperature", units="K", kind="hinted")
    setpoint = Cpt(ReadbackSignal, reader="_read_setpoint", units="K", kind="normal")
    band = Cpt(Signal, value=0.5, kind="config")
    hold = Cpt(Signal, value=300.0, kind="config")
    contains_lithium = Cpt(Signal, value=True, kind="config")

    def __init__(self, *, backend: ChamberBackend, clock: Clock, temperature_range=(233.15, 473.15), band=0.5, hold=300.0,
                 contains_lithium=True, poll=5.0, timeout=4 * 3600.0, name: str, **kwargs):
        self.backend = backend
        self.clock = clock
        self.temperature_range = temperature_range
        self.poll = poll
        self.timeout = timeout
        super().__init__(name=name, **kwargs)
        self.band.put(band)
        self.hold.put(hold)
        self.contains_lithium.put(contains_lithium)

    def _read_temperature(self) -> float:
        return self.backend.read_temperature()

    def _read_setpoint(self) -> float:
        return self.backend.setpoint

    # The RunEngine calls stop() on a chamber a plan has set, at the end of every plan and on a
    # pause, and pause()/resume() on every device a plan has read. The controller regulates by
    # itself, so each leaves it at its setpoint: a pause must not cool a cell mid-step, and the next
    # step of an experiment expects the temperature the last one set. Where the chamber goes when an
    # experiment ends or fails is the lab's to say (``labctl.lab.Lab.make_safe``: its safe setpoint).
    def stop(self, *, success: bool = False) -> None:
        """Keep the setpoint: the controller goes on regulating at it (see the comment above)."""

    def pause(self) -> None:
        """Keep the setpoint while the plan is paused."""

    def resume(self) -> None:
        """Nothing to restore: the setpoint was kept."""

    def set(self, kelvin: float, *, soak: float = 0.0) -> DeviceStatus:
        """Set the setpoint; the status finishes when the chamber is stable there, then ``soak`` s later.

        Parameters
        ----------
        kelvin : float
            Setpoint, K.
        soak : float
            How long to hold at the setpoint once stable, s on the session clock. The readback must
            stay in the band throughout: if it leaves, stability, and the soak, start again, so the
            cell really spends ``soak`` at the setpoint. Plans pass it as ``bps.abs_set(chamber,
            kelvin, soak=...)``.

        Raises
        ------
        ValueError
            Outside the chamber's range, or a negative soak; nothing is sent to the controller.
        labctl.core.errors.LithiumWouldMelt
            At or above lithium's melting point while ``contains_lithium``; nothing is sent.
        """
        low, high = self.temperature_range
        if not low <= kelvin <= high:
            raise ValueError(
                f"{self.name}: setpoint {kelvin - 273.15:.2f} degC is outside the chamber's range "
                f"{low - 273.15:.1f} to {high - 273.15:.1f} degC"
            )
        # The experiment file's validation refuses it first; this is the last line of defence.
        if LithiumWouldMelt.refuses(kelvin, bool(self.contains_lithium.get())):
            raise LithiumWouldMelt(self.name, kelvin)
        if soak < 0:
            raise ValueError(f"{self.name}: a soak cannot be negative, got {soak:g} s")
        self.backend.set_setpoint(kelvin)
        band, hold = number(self.band), number(self.hold)
        what = f"stable at {kelvin - 273.15:.2f} degC (+/- {band:g} K for {hold:g} s)"
        return status_when(
            self, self.clock, lambda: abs(self.backend.read_temperature() - kelvin) <= band,
            period=self.poll, hold=hold + soak, timeout=self.timeout + soak,
            what=f"{what}, then a {soak:g} s soak" if soak else what,
        )
