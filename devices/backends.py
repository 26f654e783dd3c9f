"""What each ophyd device needs from its backend, as ``typing.Protocol``s: the seams between devices and drivers.

A device (``devices.biologic.channel``, ``.analyser``, ``devices.chamber.device``,
``devices.rig.device``) is written against one of these; the real driver and the simulator both
satisfy it, so the lab builder can hand either to the same device:

- :class:`PotentiostatBackend`: ``biologic.backend.EClibBackend``, over the vendor's DLL or the
  simulated library (``sim.eclib.SimEClib``);
- :class:`ImpedanceBackend`: ``biologic.mtz35.MTZ35Backend``, over the simulated MTZ-35
  (``sim.mtz35.SimMTZ35``) at its link;
- :class:`ChamberBackend`: the Modbus controllers (``chamber.controllers``), or ``sim.chamber.SimChamber``;
- :class:`PressureRigBackend`: ``rig.protocol.RigBackend`` on the line, or ``sim.rig.SimRig``.

They are ``runtime_checkable`` so that a test can check a backend has every member; the types of
the members are checked statically. No bluesky or ophyd here.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from devices.biologic.techniques import CALIMIT, CPLIMIT, ImpedanceTechnique, PEIS, TimedTechnique

Technique = TimedTechnique | ImpedanceTechnique | CPLIMIT | CALIMIT


@runtime_checkable
class PotentiostatBackend(Protocol):
    """One potentiostat channel, for ``PotentiostatChannel`` and its ``eis`` meter."""

    @property
    def running(self) -> bool:
        """Get whether a technique runs (as of the last look at the instrument)."""
        ...

    def start(self, technique: Technique, on_done: Callable[..., None] | None = None) -> float:
        """Start ``technique`` now; return when it should end. ``on_done(reason, failure)`` runs at its end."""
        ...

    def read_rows(self) -> dict[str, np.ndarray]:
        """Return the (time, Ewe, I) rows of timed techniques measured since the last call."""
        ...

    def latest(self) -> dict[str, float]:
        """Return the most recent sample (time, Ewe, I)."""
        ...

    def open_circuit_values(self) -> dict[str, float]:
        """Return (time, Ewe, I = 0) of the idle channel now."""
        ...

    def read_spectrum(self) -> dict | None:
        """Return the last finished impedance sweep, once."""
        ...

    def stop(self) -> None:
        """Open the circuit now, keeping every record measured."""
        ...


@runtime_checkable
class ImpedanceBackend(Protocol):
    """An impedance analyser, for ``ImpedanceAnalyser``."""

    @property
    def running(self) -> bool:
        """Get whether a sweep runs (as of the last look at the instrument)."""
        ...

    def check(self, technique: PEIS) -> None:
        """Refuse a sweep the instrument cannot run or the lab does not allow; send nothing."""
        ...

    def start(self, technique: PEIS, on_done: Callable[[str], None] | None = None) -> float:
        """Start ``technique`` now; return when it should end. ``on_done(reason)`` runs at its end."""
        ...

    def read_spectrum(self) -> dict | None:
        """Return the last finished sweep, once."""
        ...

    def stop(self) -> None:
        """Switch the generator off now, keeping the points measured."""
        ...


@runtime_checkable
class ChamberBackend(Protocol):
    """A temperature chamber's controller, for ``TemperatureChamber``; kelvin throughout."""

    @property
    def setpoint(self) -> float:
        """Get the target setpoint as the controller holds it, K."""
        ...

    def read_temperature(self) -> float:
        """Measure the chamber temperature, K."""
        ...

    def set_setpoint(self, kelvin: float) -> None:
        """Set the target setpoint, K."""
        ...


class PressedArea(Protocol):
    """The rig's settings a device reads: the area the force presses on, m^2."""

    @property
    def area(self) -> float: ...


@runtime_checkable
class PressureRigBackend(Protocol):
    """A stack-pressure rig's controller, for ``StackPressureRig``; newtons, pascals and metres."""

    @property
    def params(self) -> PressedArea:
        """Get the settings the device reads (the pressed area)."""
        ...

    def read_force(self) -> float:
        """Measure the force, N."""
        ...

    def read_pressure(self) -> float:
        """Measure the stack pressure, Pa."""
        ...

    def crosshead_position(self) -> float:
        """Measure the crosshead position, m."""
        ...

    def set_target(self, pascal: float) -> None:
        """Set the pressure the hold loop keeps, Pa."""
        ...

    def hold(self, enabled: bool) -> None:
        """Switch the closed-loop hold on or off."""
        ...

    def release(self) -> None:
        """Back the crosshead off the stack."""
        ...
