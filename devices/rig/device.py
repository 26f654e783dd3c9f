"""The stack-pressure rig as an ophyd device: target pressure, readbacks, closed-loop hold."""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from devices.backends import PressureRigBackend
from devices.common import ClockSignal, ReadbackSignal, status_when
from labctl.core.clock import Clock


class StackPressureRig(Device):
    """A stack-pressure rig; ``set(pascal)`` holds that pressure, ``set(0)`` releases it.

    Parameters
    ----------
    backend : PressureRigBackend
        The controller: ``devices.rig.protocol.RigBackend`` on its line, or ``devices.sim.rig.SimRig``.
    clock : Clock
        The session clock.
    pressure_range : (float, float)
        Hardware limits, Pa; targets outside are refused before they are sent.
    band : float
        The set() status finishes once the pressure is within ``band`` Pa of the target.
    name : str
        Device name.
    """

    pressure = Cpt(ReadbackSignal, reader="_read_pressure", units="Pa", kind="hinted")
    force = Cpt(ReadbackSignal, reader="_read_force", units="N", kind="normal")
    crosshead = Cpt(ReadbackSignal, reader="_read_position", units="m", kind="normal")
    target = Cpt(ClockSignal, value=0.0, units="Pa", kind="normal")  # stamped on the session clock
    area = Cpt(Signal, value=0.0, kind="config")

    def __init__(self, *, backend: PressureRigBackend, clock: Clock, pressure_range=(0.0, 20e6), band=0.1e6, poll=5.0,
                 settle=30.0, timeout=3600.0, name: str, **kwargs):
        self.backend = backend
        self.clock = clock
        self.pressure_range = pressure_range
        self.band_pa = band
        self.poll, self.settle, self.timeout = poll, settle, timeout
        super().__init__(name=name, **kwargs)
        self.area.put(backend.params.area)
        self.target.put(0.0)  # a session-clock timestamp from the start

    def _read_pressure(self) -> float:
        return self.backend.read_pressure()

    def _read_force(self) -> float:
        return self.backend.read_force()

    def _read_position(self) -> float:
        return self.backend.crosshead_position()

    # The RunEngine calls stop() on a rig a plan has set, at the end of every plan and on a pause,
    # and pause()/resume() on every device a plan has read. The hold loop runs in the rig's firmware,
    # so each leaves it holding: a paused or finished step keeps the stack pressure (a stripping
    # electrode loses contact within a minute without it), and an approach under way goes on to the
    # target. Whether the pressure is released when an experiment ends is the lab file's ``on_finish``,
    # applied by ``labctl.lab.Lab.make_safe``.
    def stop(self, *, success: bool = False) -> None:
        """Keep holding (see the comment above)."""

    def pause(self) -> None:
        """Keep holding while the plan is paused."""

    def resume(self) -> None:
        """Nothing to restore: the loop held throughout."""

    def set(self, pascal: float) -> DeviceStatus:
        """Hold ``pascal`` with the closed loop (or release at 0); finishes when within the band."""
        low, high = self.pressure_range
        if not low <= pascal <= high:
            raise ValueError(
                f"{self.name}: {pascal / 1e6:.3g} MPa is outside the rig's range "
                f"{low / 1e6:g} to {high / 1e6:g} MPa"
            )
        self.target.put(pascal)
        if pascal == 0:
            self.backend.release()
        else:
            self.backend.set_target(pascal)
            self.backend.hold(True)
        return status_when(
            self, self.clock, lambda: abs(self.backend.read_pressure() - pascal) <= self.band_pa,
            period=self.poll, hold=self.settle, timeout=self.timeout,
            what=f"{pascal / 1e6:g} MPa (+/- {self.band_pa / 1e6:g} MPa)",
        )
