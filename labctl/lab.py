"""Build a lab's devices from its lab file: the simulated lab, or (later issues) the real drivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.clock import VirtualClock, WallClock
from labctl.errors import LabctlError


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

    def close(self) -> None:
        """Stop the wire simulators (their threads and sockets)."""
        for server in self.servers:
            server.close()
        self.servers.clear()

    def devices(self) -> dict[str, Any]:
        """Return the devices by the role names plans use as arguments."""
        return {"potentiostat": self.potentiostat, "chamber": self.chamber, "rig": self.rig}


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
        backend=make_controller(inst.chamber.kind, ModbusLink(inst.chamber.address)), clock=clock,
        temperature_range=tuple(inst.chamber.temperature_range), band=inst.chamber.stability_band,
        hold=inst.chamber.stability_hold, name="chamber",
    )
    rig = StackPressureRig(
        backend=RigBackend(inst.rig.address, area=inst.rig.area), clock=clock,
        pressure_range=tuple(inst.rig.pressure_range), band=inst.rig.band, name="rig",
    )
    return Lab(clock, potentiostat, chamber, rig, config)


def build_simulated_lab(config, cell_params, assets_dir: Path, clock: VirtualClock) -> Lab:
    """The simulated lab: cell, chamber and rig physics on one virtual clock, one seeded generator."""
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
        EClib(pstat_sim), clock, channel=inst.potentiostat.channel,
        voltage_window=tuple(inst.potentiostat.voltage_window), current_limit=inst.potentiostat.current_limit,
    )
    potentiostat = PotentiostatChannel(
        backend=backend, clock=clock, assets_dir=assets_dir, channel=inst.potentiostat.channel,
        name="potentiostat",
    )
    chamber_backend, rig_backend, servers = wire_backends(inst, chamber_sim, rig_sim)
    chamber = TemperatureChamber(
        backend=chamber_backend, clock=clock, temperature_range=tuple(inst.chamber.temperature_range),
        band=inst.chamber.stability_band, hold=inst.chamber.stability_hold, name="chamber",
    )
    rig = StackPressureRig(
        backend=rig_backend, clock=clock, pressure_range=tuple(inst.rig.pressure_range), band=inst.rig.band,
        name="rig",
    )
    simulators = {"cell": cell, "chamber": chamber_sim, "rig": rig_sim, "potentiostat": pstat_sim}
    return Lab(clock, potentiostat, chamber, rig, config, simulators, servers)


def wire_backends(inst, chamber_sim, rig_sim):
    """Return the chamber and rig backends and the servers behind them.

    Kind ``sim``: the simulators in process. A controller kind (``eurotherm-3200``, ``mark10-rig``...):
    the real drivers, talking over loopback to the simulators served at the wire (Modbus TCP, the
    rig's line protocol), so the driver code a real lab runs is what the simulated lab runs too.
    """
    chamber_backend, rig_backend, servers = chamber_sim, rig_sim, []
    if getattr(inst.chamber, "kind", "sim") != "sim":  # test stubs of the lab file omit kind
        from devices.chamber.controllers import make_controller
        from devices.modbus import ModbusLink
        from devices.sim.wire import ModbusChamberServer

        server = ModbusChamberServer(chamber_sim, inst.chamber.kind)
        servers.append(server)
        chamber_backend = make_controller(inst.chamber.kind, ModbusLink(server.address))
    if getattr(inst.rig, "kind", "sim") != "sim":
        from devices.rig.protocol import RigBackend
        from devices.sim.wire import RigLineServer

        server = RigLineServer(rig_sim)
        servers.append(server)
        rig_backend = RigBackend(server.address, area=inst.rig.area)
    return chamber_backend, rig_backend, servers
