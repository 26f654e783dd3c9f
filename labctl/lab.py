"""Build a lab's devices from its lab file: every instrument it has, each real or simulated on its own.

One device factory per role (``make_potentiostat``, ``make_chamber``, ``make_rig``) over a backend
that is either the real driver at the lab file's address or the simulator; real and simulated labs
differ only in those backends. A lab file may leave out any instrument (a chamber-only lab); the
experiment check refuses a step needing one it lacks (``labctl.config.check_roles``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from labctl.core.clock import VirtualClock, WallClock
from labctl.core.errors import LabctlError, LithiumWouldMelt

if TYPE_CHECKING:
    from devices.sim.cell import CellParameters

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
    potentiostat: Any  # each role None when the lab file has no such instrument
    chamber: Any
    rig: Any
    config: Any
    simulators: dict[str, Any] = field(default_factory=dict)
    servers: list[Any] = field(default_factory=list)  # wire simulators on loopback, when the lab file asks
    impedance_analyser: Any = None  # the MTZ-35, when the lab file has one: peis then runs on it
    seed: int | None = None  # the simulators' seed, for the start documents (None: nothing simulated)

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
        actions = []
        if self.potentiostat is not None:
            actions.append(("potentiostat", "open circuit", self.potentiostat.stop))
        if self.impedance_analyser is not None:
            actions.append(("impedance_analyser", "stop the sweep", self.impedance_analyser.stop))
        if self.chamber is not None:
            safe = inst.chamber.safe_setpoint
            actions.append(("chamber", f"setpoint {safe - 273.15:g} degC (safe_setpoint)",
                            lambda: self._set_safe_setpoint(safe)))
        if self.rig is not None and inst.rig.on_finish == "release":
            actions.append(("rig", "release the pressure (on_finish: release)", self.rig.backend.release))
        elif self.rig is not None:  # the firmware holds on its own: reading the pressure checks the rig answers
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


def cell_parameters(cell=None) -> CellParameters:
    """Turn an experiment's cell metadata (and its ``sim`` overrides) into simulator parameters.

    Without a cell (the shell or a queue with no experiment file) the simulator's default cell:
    the lab builder is the one place outside the simulators that knows their parameters.
    """
    from devices.sim.cell import CellParameters

    if cell is None:
        return CellParameters()
    values = {
        "kind": cell.kind,
        "surface": cell.surface,
        "thickness": cell.thickness,
        "electrode_area": cell.electrode_area_m2,
        "relative_density": cell.relative_density,
    }
    return CellParameters(**{**values, **(cell.sim or {})})


ROOM_TEMPERATURE = 298.15  # K: a simulated cell's temperature in a lab without a chamber
READING_MAX_AGE = 10.0  # s: how old a real instrument's reading may be before the simulated cell asks again


def build_lab(config, cell_params, assets_dir: Path, clock: VirtualClock | None = None, *,
              roles: Iterable[str] | None = None, sleep: Callable[[float], None] = time.sleep,
              seed: int | None = None) -> Lab:
    """Build the lab described by ``config`` (a ``LabConfig``): each instrument real or simulated as it says.

    A lab with any real instrument runs on the wall clock (``clock`` is then ignored); a fully
    simulated one on ``clock`` (a new virtual clock if None). ``roles``: build only these of the
    instruments the lab has (those an experiment's steps take), so a step that needs no
    potentiostat never loads the vendor's DLL; None builds them all. ``seed`` overrides the lab
    file's (an experiment file's ``seed``, or ``labctl run --seed``).
    """
    wall = any(not config.simulates(role) for role in config.instruments.present())
    clock = WallClock() if wall else clock or VirtualClock()
    return assemble(config, cell_params, assets_dir, clock, config.simulates, sleep, roles, seed)


def build_simulated_lab(config, cell_params, assets_dir: Path, clock: VirtualClock, *,
                        sleep: Callable[[float], None] = time.sleep, seed: int | None = None) -> Lab:
    """The lab of ``config`` with every instrument simulated (the dry run, the tests), on ``clock``.

    ``sleep`` is how the drivers wait between attempts after a fault (the virtual clock cannot be
    moved from inside a device call); the fault tests pass a recorder. ``seed`` overrides the lab
    file's (an experiment file's ``seed``, or ``labctl run --seed``).
    """
    return assemble(config, cell_params, assets_dir, clock, lambda role: True, sleep, seed=seed)


def _only(instruments, roles: Iterable[str] | None):
    """Return ``instruments`` without the roles not in ``roles`` (all of them if None)."""
    if roles is None:
        return instruments
    return instruments.model_copy(update={role: None for role in instruments.present() if role not in set(roles)})


def assemble(config, cell_params, assets_dir: Path, clock, simulated: Callable[[str], bool],
             sleep: Callable[[float], None] = time.sleep, roles: Iterable[str] | None = None,
             seed: int | None = None) -> Lab:
    """Build each instrument the lab file has from its backend, real or simulated as ``simulated(role)`` says.

    The devices are the same either way; only their backends differ. Simulated instruments share
    one cell, each simulator drawing its own stream of one seed; the cell's temperature and pressure
    come from the chamber and the rig, simulated or real (then from their readings), else room
    temperature and no pressure.
    Only ``roles`` are built (None: every instrument the lab has).
    """
    inst, lab = _only(config.instruments, roles), Lab(clock, None, None, None, config)
    library = None
    if inst.potentiostat is not None and not simulated("potentiostat"):
        library = vendor_library(config)  # first: without the vendor's DLL no instrument is touched
    # One independent stream per simulator: the wire servers read the chamber and rig from their own
    # threads, so a shared generator would hand the cell different numbers from run to run.
    lab.seed = config.seed if seed is None else seed
    chamber_rng, rig_rng, cell_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(lab.seed).spawn(3))
    temperature, pressure = (lambda t: ROOM_TEMPERATURE), (lambda t: 0.0)
    if inst.chamber is not None:
        backend, temperature = chamber_backend(inst.chamber, simulated("chamber"), lab, chamber_rng, sleep)
        lab.chamber = make_chamber(inst.chamber, backend, clock)
    if inst.rig is not None:
        backend, pressure = rig_backend(inst.rig, simulated("rig"), lab, rig_rng, temperature, sleep)
        lab.rig = make_rig(inst.rig, backend, clock)
    cell = None
    if any(simulated(role) for role in ("potentiostat", "impedance_analyser") if getattr(inst, role) is not None):
        from devices.sim.cell import SimCell

        cell = lab.simulators["cell"] = SimCell(cell_params, temperature, pressure, cell_rng, clock.now())
    if inst.potentiostat is not None:
        library = library or simulated_library(inst.potentiostat, clock, cell, lab)
        lab.potentiostat = make_potentiostat(inst.potentiostat, library, clock, assets_dir, sleep)
    if inst.impedance_analyser is not None:
        lab.impedance_analyser = simulated_analyser(inst.impedance_analyser, clock, cell, lab.simulators)
    return lab


# ---- one device per role: the same whatever the backend -----------------------------------------
def make_potentiostat(config, library, clock, assets_dir: Path, sleep: Callable[[float], None]):
    """Return the potentiostat channel over ``library`` (the vendor's DLL or the simulated one)."""
    from devices.biologic.backend import EClibBackend
    from devices.biologic.channel import PotentiostatChannel

    backend = EClibBackend(
        library, clock, address=config.address, channel=config.channel,
        voltage_window=tuple(config.voltage_window), current_limit=config.current_limit, sleep=sleep,
    )
    return PotentiostatChannel(backend=backend, clock=clock, assets_dir=assets_dir, channel=config.channel,
                               name="potentiostat")


def make_chamber(config, backend, clock):
    """Return the temperature chamber over ``backend`` (a controller driver or the simulator)."""
    from devices.chamber.device import TemperatureChamber

    return TemperatureChamber(
        backend=backend, clock=clock, temperature_range=tuple(config.temperature_range),
        band=config.stability_band, hold=config.stability_hold, name="chamber",
    )


def make_rig(config, backend, clock):
    """Return the stack-pressure rig over ``backend`` (the line driver or the simulator)."""
    from devices.rig.device import StackPressureRig

    return StackPressureRig(backend=backend, clock=clock, pressure_range=tuple(config.pressure_range),
                            band=config.band, name="rig")


# ---- the backends, real or simulated --------------------------------------------------------------
def simulated_library(config, clock, cell, lab: Lab):
    """Return the EC-Lab binding over the simulated library, on the simulated cell."""
    from devices.biologic.eclib import EClib
    from devices.sim.eclib import SimEClib

    # channels are numbered from 1 in the lab file, as in EC-Lab
    lab.simulators["potentiostat"] = library = SimEClib(clock, cell, channel=config.channel - 1)
    return EClib(library)


def vendor_library(config):
    """Return the EC-Lab binding over the vendor's DLL.

    Loaded only when a real potentiostat is built, so a lab without one (or with a simulated one)
    runs on any platform.
    """
    from devices.biologic.eclib import EClib
    from devices.errors import InstrumentLost

    inst = config.instruments.potentiostat
    try:
        return EClib.load(inst.library)
    except OSError as error:
        raise InstrumentLost(
            "potentiostat", inst.address, f"cannot load the EC-Lab library {inst.library!r} (lab {config.name!r}): "
            f"{error}; to run the other instruments without it, set simulated: true under instruments.potentiostat"
        ) from None


def chamber_backend(config, simulated: bool, lab: Lab, rng, sleep: Callable[[float], None]):
    """Return the chamber's backend and the temperature the simulated cell sees, ``temperature(t)`` in K.

    Simulated, kind ``sim``: the simulator in process. Simulated, a controller kind
    (``eurotherm-3200``...): the real driver over loopback to the simulator served at the wire
    (Modbus TCP, at the lab file's unit id), so the driver code a real lab runs is what the simulated
    lab runs too. Real: the driver at the lab file's address and unit.
    """
    from devices.chamber.controllers import make_controller
    from devices.modbus import ModbusLink

    if not simulated:
        backend = make_controller(config.kind, ModbusLink(config.address, device_id=config.unit, sleep=sleep,
                                                          name="chamber"))
        return backend, LatestReading(backend.read_temperature, lab.clock)
    from devices.sim.chamber import SimChamber

    sim = lab.simulators["chamber"] = SimChamber(lab.clock, rng=rng)
    temperature = sim.history_or_now(sim.temperature)
    if config.kind == "sim":
        return sim, temperature
    from devices.sim.wire import ModbusChamberServer

    server = ModbusChamberServer(sim, config.kind, device_id=config.unit)
    lab.servers.append(server)
    link = ModbusLink(server.address, device_id=config.unit, timeout=LOOPBACK_TIMEOUT, sleep=sleep, name="chamber")
    return make_controller(config.kind, link), temperature


def rig_backend(config, simulated: bool, lab: Lab, rng, temperature, sleep: Callable[[float], None]):
    """Return the rig's backend and the pressure the simulated cell sees, ``pressure(t)`` in Pa (as the chamber's)."""
    from devices.rig.protocol import RigBackend

    if not simulated:
        backend = RigBackend(config.address, area=config.area, sleep=sleep, name="rig")
        return backend, LatestReading(backend.read_pressure, lab.clock)
    from devices.sim.rig import RigParameters, SimRig

    sim = lab.simulators["rig"] = SimRig(lab.clock, temperature, RigParameters(area=config.area), rng=rng)
    pressure = sim.history_or_now(sim.pressure)
    if config.kind == "sim":
        return sim, pressure
    from devices.sim.wire import RigLineServer

    server = RigLineServer(sim)
    lab.servers.append(server)
    backend = RigBackend(server.address, area=config.area, timeout=LOOPBACK_TIMEOUT, sleep=sleep, name="rig")
    return backend, pressure


def simulated_analyser(config, clock, cell, simulators: dict):
    """Return the MTZ-35 on the simulated cell, adding its simulator.

    The real backend (limits, polling, spectra) runs over the simulator at labctl's link; a real lab
    cannot have one (see ``LabConfig``): BioLogic publishes no programming interface for the MTZ-35.
    """
    from devices.biologic.analyser import ImpedanceAnalyser
    from devices.biologic.mtz35 import MTZ35Backend
    from devices.sim.mtz35 import SimMTZ35

    simulators["impedance_analyser"] = link = SimMTZ35(clock, cell)
    backend = MTZ35Backend(link, clock, max_amplitude=config.max_amplitude)
    return ImpedanceAnalyser(backend=backend, clock=clock, name="impedance_analyser")


class LatestReading:
    """A real instrument's reading as the simulated cell's environment, ``reading(t)``.

    The cell asks at every sample; the instrument is read at most every ``max_age`` s of the clock,
    and a failed read keeps the last value (the instrument's own device reports the fault).
    """

    def __init__(self, read: Callable[[], float], clock, max_age: float = READING_MAX_AGE):
        self.read, self.clock, self.max_age = read, clock, max_age
        self.value: float | None = None
        self.at = -math.inf

    def __call__(self, t: float) -> float:
        now = self.clock.now()
        if now - self.at >= self.max_age:
            try:
                self.value, self.at = self.read(), now
            except LabctlError as error:
                if self.value is None:
                    raise
                log.warning("simulated cell: keeping the last reading (%s)", error)
        return self.value
