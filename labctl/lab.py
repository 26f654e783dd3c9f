"""Build a lab's devices from its lab file: the simulated lab, or (later issues) the real drivers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from labctl.clock import VirtualClock, WallClock
from labctl.errors import LabctlError, LithiumWouldMelt

log = logging.getLogger(__name__)

# A simulator on loopback answers in well under a millisecond: a short timeout keeps a test's
# no-reply fault quick, and still leaves the drivers' retries to absorb a slow moment.
LOOPBACK_TIMEOUT = 0.25  # s


@dataclass(frozen=True)
class SafeAction:
    """One action of :meth:`Lab.make_safe`: the instrument, what was done, and what went wrong if it failed."""

    instrument: str
    action: str
    result: str = "done"
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Get whether the action succeeded."""
        return self.error is None

    def __str__(self) -> str:
        return f"{self.instrument}: {self.action}: " + (self.result if self.ok else f"FAILED: {self.error}")


@dataclass
class Lab:
    """The devices of one lab, by role, plus the simulators behind them when simulated."""

    clock: VirtualClock | WallClock
    potentiostat: Any
    chamber: Any
    rig: Any
    config: Any
    simulators: dict[str, Any] = field(default_factory=dict)
    servers: list[Any] = field(default_factory=list)  # wire simulators on loopback, when the lab file asks
    impedance_analyser: Any = None  # the MTZ-35, when the lab file has one: peis then runs on it

    def close(self) -> None:
        """Stop the wire simulators (their threads and sockets)."""
        for server in self.servers:
            server.close()
        self.servers.clear()

    def make_safe(self) -> list[SafeAction]:
        """Leave the lab safe after an experiment: the cell at open circuit (and no sweep on the impedance
        analyser), the chamber at its safe setpoint, the rig as the lab file's ``on_finish`` says (hold,
        or release the pressure).

        For the end of an experiment, or of the step that failed, not between steps: a
        conditioning step at 170 degC followed by plating at 30 degC must not pass through the
        safe setpoint, and the pressure must stay on from one step to the next. Each action is tried
        whatever happened to the others (the instrument that made a step fail may be unreachable)
        and goes straight to the driver, so nothing is left waiting for the chamber to settle.

        Returns
        -------
        list of SafeAction
            One per instrument, in the order tried (each also logged): what was done, or why it failed.
        """
        inst = self.config.instruments
        safe = inst.chamber.safe_setpoint
        actions = [("potentiostat", "open circuit", self.potentiostat.stop)]
        if self.impedance_analyser is not None:
            actions.append(("impedance_analyser", "stop the sweep", self.impedance_analyser.stop))
        actions.append(("chamber", f"setpoint {safe - 273.15:g} degC (safe_setpoint)",
                        lambda: self._set_safe_setpoint(safe)))
        if inst.rig.on_finish == "release":
            actions.append(("rig", "release the pressure (on_finish: release)", self.rig.backend.release))
        else:  # the firmware holds on its own: reading the pressure checks the rig answers, for the record
            actions.append(("rig", "keep the pressure held (on_finish: hold)",
                            lambda: f"{self.rig.backend.read_pressure() / 1e6:.2f} MPa"))
        done = []
        for instrument, action, call in actions:
            try:
                done.append(SafeAction(instrument, action, call() or "done"))
                log.info("make safe: %s", done[-1])
            except Exception as error:  # every instrument gets its turn, whatever the others do
                done.append(SafeAction(instrument, action, error=f"{type(error).__name__}: {error}"))
                log.error("make safe: %s", done[-1])
        return done

    def _set_safe_setpoint(self, kelvin: float) -> None:
        # Straight to the driver (no waiting), but not past the melting-point interlock that the
        # chamber's own set() applies: the file check refuses such a safe_setpoint first.
        interlock = getattr(self.chamber, "contains_lithium", None)  # armed unless told the cell has no lithium
        if LithiumWouldMelt.refuses(kelvin, interlock.get() if interlock is not None else True):
            raise LithiumWouldMelt(self.chamber.name, kelvin)
        self.chamber.backend.set_setpoint(kelvin)

    def devices(self) -> dict[str, Any]:
        """Return the devices by the role names plans use as arguments."""
        return {"potentiostat": self.potentiostat, "chamber": self.chamber, "rig": self.rig,
                "impedance_analyser": self.impedance_analyser}


def cell_parameters(cell) -> "CellParameters":
    """Turn an experiment's cell metadata (and its ``sim`` overrides) into simulator parameters."""
    from devices.sim.cell import CellParameters

    values = {
        "kind": cell.kind,
        "surface": cell.surface,
        "thickness": cell.thickness,
        "electrode_area": cell.electrode_area_m2,
        "relative_density": cell.relative_density,
    }
    return CellParameters(**{**values, **(cell.sim or {})})


def build_lab(config, cell_params, assets_dir: Path, clock: VirtualClock | None = None) -> Lab:
    """Build the lab described by ``config`` (a ``LabConfig``) with the cell ``cell_params`` in it."""
    if not config.simulated:
        return build_real_lab(config, assets_dir)
    return build_simulated_lab(config, cell_params, assets_dir, clock or VirtualClock())


def build_real_lab(config, assets_dir: Path) -> Lab:
    """The real instruments on the wall clock: the EC-Lab library, the chamber's Modbus controller, the rig.

    The potentiostat comes first: without the vendor's DLL (Windows only) nothing else is touched.
    """
    from devices.biologic.backend import EClibBackend
    from devices.biologic.channel import PotentiostatChannel
    from devices.biologic.eclib import EClib
    from devices.chamber.controllers import make_controller
    from devices.chamber.device import TemperatureChamber
    from devices.modbus import ModbusLink
    from devices.rig.device import StackPressureRig
    from devices.rig.protocol import RigBackend

    clock, inst = WallClock(), config.instruments
    try:
        library = EClib.load(inst.potentiostat.library)
    except OSError as error:
        raise LabctlError(f"lab {config.name!r}: cannot load the EC-Lab library {inst.potentiostat.library!r}: {error}") from None
    backend = EClibBackend(
        library, clock, address=inst.potentiostat.address, channel=inst.potentiostat.channel,
        voltage_window=tuple(inst.potentiostat.voltage_window), current_limit=inst.potentiostat.current_limit,
    )
    potentiostat = PotentiostatChannel(backend=backend, clock=clock, assets_dir=assets_dir,
                                       channel=inst.potentiostat.channel, name="potentiostat")
    chamber = TemperatureChamber(
        backend=make_controller(inst.chamber.kind, ModbusLink(inst.chamber.address, name="chamber")), clock=clock,
        temperature_range=tuple(inst.chamber.temperature_range), band=inst.chamber.stability_band,
        hold=inst.chamber.stability_hold, name="chamber",
    )
    rig = StackPressureRig(
        backend=RigBackend(inst.rig.address, area=inst.rig.area, name="rig"), clock=clock,
        pressure_range=tuple(inst.rig.pressure_range), band=inst.rig.band, name="rig",
    )
    return Lab(clock, potentiostat, chamber, rig, config)


def build_simulated_lab(config, cell_params, assets_dir: Path, clock: VirtualClock, *,
                        sleep: Callable[[float], None] = time.sleep) -> Lab:
    """The simulated lab: cell, chamber and rig physics on one virtual clock, one seeded generator.

    ``sleep`` is how the drivers wait between attempts after a fault (the virtual clock cannot be
    moved from inside a device call); the fault tests pass a recorder.
    """
    from devices.biologic.channel import PotentiostatChannel
    from devices.chamber.device import TemperatureChamber
    from devices.rig.device import StackPressureRig
    from devices.sim.cell import SimCell
    from devices.sim.chamber import SimChamber
    from devices.biologic.backend import EClibBackend
    from devices.biologic.eclib import EClib
    from devices.sim.eclib import SimEClib
    from devices.sim.rig import RigParameters, SimRig

    rng = np.random.default_rng(config.seed)
    inst = config.instruments
    chamber_sim = SimChamber(clock, rng=rng)
    temperature = chamber_sim.history_or_now(chamber_sim.temperature)
    rig_sim = SimRig(clock, temperature, RigParameters(area=inst.rig.area), rng=rng)
    cell = SimCell(cell_params, temperature, rig_sim.history_or_now(rig_sim.pressure), rng, clock.now())
    # The channel drives the simulated EC-Lab library through the same binding, encoder and
    # parser as the real EClib64.dll; channels are numbered from 1 in the lab file, as in EC-Lab.
    pstat_sim = SimEClib(clock, cell, channel=inst.potentiostat.channel - 1)
    backend = EClibBackend(
        EClib(pstat_sim), clock, address=getattr(inst.potentiostat, "address", "sim"),  # test stubs omit it
        channel=inst.potentiostat.channel, voltage_window=tuple(inst.potentiostat.voltage_window),
        current_limit=inst.potentiostat.current_limit, sleep=sleep,
    )
    potentiostat = PotentiostatChannel(
        backend=backend, clock=clock, assets_dir=assets_dir, channel=inst.potentiostat.channel,
        name="potentiostat",
    )
    chamber_backend, rig_backend, servers = wire_backends(inst, chamber_sim, rig_sim, sleep)
    chamber = TemperatureChamber(
        backend=chamber_backend, clock=clock, temperature_range=tuple(inst.chamber.temperature_range),
        band=inst.chamber.stability_band, hold=inst.chamber.stability_hold, name="chamber",
    )
    rig = StackPressureRig(
        backend=rig_backend, clock=clock, pressure_range=tuple(inst.rig.pressure_range), band=inst.rig.band,
        name="rig",
    )
    simulators = {"cell": cell, "chamber": chamber_sim, "rig": rig_sim, "potentiostat": pstat_sim}
    analyser = simulated_analyser(inst, clock, cell, simulators)
    return Lab(clock, potentiostat, chamber, rig, config, simulators, servers, impedance_analyser=analyser)


def simulated_analyser(inst, clock: VirtualClock, cell, simulators: dict):
    """Return the MTZ-35 on the simulated cell if the lab file has one (else None), adding its simulator.

    The real backend (limits, polling, spectra) runs over the simulator at labctl's link; a real lab
    cannot have one (see ``LabConfig``): BioLogic publishes no programming interface for the MTZ-35.
    """
    config = getattr(inst, "impedance_analyser", None)  # test stubs of the lab file omit it
    if config is None:
        return None
    from devices.biologic.analyser import ImpedanceAnalyser
    from devices.biologic.mtz35 import MTZ35Backend
    from devices.sim.mtz35 import SimMTZ35

    simulators["impedance_analyser"] = link = SimMTZ35(clock, cell)
    backend = MTZ35Backend(link, clock, max_amplitude=config.max_amplitude)
    return ImpedanceAnalyser(backend=backend, clock=clock, name="impedance_analyser")


def wire_backends(inst, chamber_sim, rig_sim, sleep: Callable[[float], None] = time.sleep):
    """Return the chamber and rig backends and the servers behind them.

    Kind ``sim``: the simulators in process. A controller kind (``eurotherm-3200``, ``mark10-rig``...):
    the real drivers, talking over loopback to the simulators served at the wire (Modbus TCP, the
    rig's line protocol), so the driver code a real lab runs is what the simulated lab runs too;
    ``sleep`` is how they wait between attempts.
    """
    chamber_backend, rig_backend, servers = chamber_sim, rig_sim, []
    if getattr(inst.chamber, "kind", "sim") != "sim":  # test stubs of the lab file omit kind
        from devices.chamber.controllers import make_controller
        from devices.modbus import ModbusLink
        from devices.sim.wire import ModbusChamberServer

        server = ModbusChamberServer(chamber_sim, inst.chamber.kind)
        servers.append(server)
        link = ModbusLink(server.address, timeout=LOOPBACK_TIMEOUT, sleep=sleep, name="chamber")
        chamber_backend = make_controller(inst.chamber.kind, link)
    if getattr(inst.rig, "kind", "sim") != "sim":
        from devices.rig.protocol import RigBackend
        from devices.sim.wire import RigLineServer

        server = RigLineServer(rig_sim)
        servers.append(server)
        rig_backend = RigBackend(server.address, area=inst.rig.area, timeout=LOOPBACK_TIMEOUT, sleep=sleep, name="rig")
    return chamber_backend, rig_backend, servers
