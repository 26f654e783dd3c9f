"""Plans for the cell's surroundings: chamber temperature and stack pressure."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from labctl.units import Unit
from plans.stubs import ENVIRONMENT, plan_metadata, wait_recording


def set_temperature(
    chamber,
    *,
    temperature: Annotated[float, Unit("degC", ge=-40, le=200)],
    record_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    md: dict | None = None,
):
    """Set the chamber temperature and wait until it is stable there.

    Parameters
    ----------
    chamber : TemperatureChamber
        The chamber; its lab-file band and hold time define "stable".
    temperature : float
        Setpoint, K (YAML: e.g. ``30 degC``).
    record_interval : float
        How often the chamber is read into the environment stream while waiting, s.
    md : dict, optional
        Extra metadata for the start document.
    """
    args = {"chamber": chamber.name, "temperature": temperature, "record_interval": record_interval}

    @bpp.run_decorator(md=plan_metadata("set_temperature", args, md))
    def inner():
        yield from bps.trigger_and_read([chamber], name=ENVIRONMENT)
        status = yield from bps.abs_set(chamber, temperature, group="chamber")
        yield from wait_recording(status, [chamber], record_interval, "chamber")
        yield from bps.trigger_and_read([chamber], name=ENVIRONMENT)

    return (yield from inner())


def set_pressure(
    rig,
    *,
    pressure: Annotated[float, Unit("MPa", ge=0, le=100)],
    record_interval: Annotated[float, Unit("s", gt=0)] = 10.0,
    md: dict | None = None,
):
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
    args = {"rig": rig.name, "pressure": pressure, "record_interval": record_interval}

    @bpp.run_decorator(md=plan_metadata("set_pressure", args, md))
    def inner():
        yield from bps.trigger_and_read([rig], name=ENVIRONMENT)
        status = yield from bps.abs_set(rig, pressure, group="rig")
        yield from wait_recording(status, [rig], record_interval, "rig")
        yield from bps.trigger_and_read([rig], name=ENVIRONMENT)

    return (yield from inner())
