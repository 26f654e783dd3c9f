"""Plans for the cell's surroundings: chamber temperature and stack pressure."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

from devices.chamber.device import TemperatureChamber
from devices.rig.device import StackPressureRig
from labctl.core.units import LabLimit, Unit
from plans.run import Outcome, run_plan
from plans.stubs import ENVIRONMENT, wait_recording


@run_plan()
def set_temperature(
    chamber: TemperatureChamber,
    *,
    temperature: Annotated[float, Unit("degC", ge=-40, le=200), LabLimit("temperature")],
    soak: Annotated[float, Unit("h", ge=0)] = 0.0,
    record_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Set the chamber temperature, wait until it is stable there, and optionally soak the cell at it.

    The chamber refuses a temperature at or above lithium's melting point while the cell has lithium
    in it (the experiment file's validation refuses it before that).

    Parameters
    ----------
    chamber : TemperatureChamber
        The chamber; its lab-file band and hold time define "stable".
    temperature : float
        Setpoint, K (YAML: e.g. ``30 degC``).
    soak : float
        Time to hold at the temperature once stable, s (YAML: e.g. ``2 h``), counted on the session
        clock while the chamber stays in its band.
    record_interval : float
        How often the chamber is read into the environment stream while waiting and soaking, s.
    md : dict, optional
        Extra metadata for the start document.
    """
    reason = f"stable at {temperature - 273.15:.2f} degC"
    reason += f", soaked {soak / 3600:.3g} h" if soak else ""
    return (yield from _settle(chamber, temperature, record_interval, reason, soak=soak))


@run_plan()
def set_pressure(
    rig: StackPressureRig,
    *,
    pressure: Annotated[float, Unit("MPa", ge=0, le=100), LabLimit("pressure")],
    record_interval: Annotated[float, Unit("s", gt=0)] = 10.0,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Apply a stack pressure and hold it with the rig's closed loop (0 MPa releases it).

    Parameters
    ----------
    rig : StackPressureRig
        The rig.
    pressure : float
        Target, Pa (YAML: e.g. ``5 MPa``).
    record_interval : float
        How often force, pressure and crosshead position are recorded while reaching it, s.
    md : dict, optional
        Extra metadata for the start document.
    """
    reason = f"holding {pressure / 1e6:g} MPa" if pressure else "released"
    return (yield from _settle(rig, pressure, record_interval, reason))


def _settle(device, value: float, record_interval: float, reason: str, **options) -> MsgGenerator[Outcome]:
    """Set ``device`` to ``value`` (``options`` go to its ``set``), recording it until its status finishes."""
    yield from bps.trigger_and_read([device], name=ENVIRONMENT)
    status = yield from bps.abs_set(device, value, group=device.name, **options)
    yield from wait_recording(status, [device], record_interval, device.name)
    reached = yield from bps.trigger_and_read([device], name=ENVIRONMENT)
    field = device.hints["fields"][0]  # the chamber's temperature, the rig's pressure
    unit = device.describe()[field].get("units")
    return Outcome("reached", reason, device.clock.now(), {"setpoint": value, "reached": reached[field]["value"]},
                   {"setpoint": unit, "reached": unit} if unit else None)
