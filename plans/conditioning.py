"""Preparing a cell: a heat treatment and its return to the test temperature, and stack-pressure programs."""

from __future__ import annotations

import math
from typing import Annotated

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator

from devices.chamber.device import TemperatureChamber
from devices.rig.device import StackPressureRig
from labctl.core.errors import LithiumWouldMelt
from labctl.core.units import LabLimit, Unit
from plans.run import Outcome, run_plan
from plans.stubs import ENVIRONMENT, wait_recording


def _lithium_stays_solid(*, chamber: TemperatureChamber, temperature: float, test_temperature: float,
                         contains_lithium: bool, **_) -> None:
    hottest = max(temperature, test_temperature)
    if LithiumWouldMelt.refuses(hottest, contains_lithium):  # before the run opens; the chamber refuses it too
        raise LithiumWouldMelt(chamber.name, hottest)


@run_plan(check=_lithium_stays_solid)
def condition_cell(
    chamber: TemperatureChamber,
    rig: StackPressureRig | None = None,
    *,
    temperature: Annotated[float, Unit("degC", ge=-40, le=200), LabLimit("temperature")],
    hold: Annotated[float, Unit("h", ge=0)],
    test_temperature: Annotated[float, Unit("degC", ge=-40, le=200), LabLimit("temperature")],
    record_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    contains_lithium: bool = True,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Heat the cell, soak it there, cool it back to the test temperature and wait until it is stable.

    For example 170 degC for 2 h for acid-treated pellets, then 30 degC. The hold is the chamber's
    soak: counted once the chamber is stable at the conditioning temperature, and only while it stays
    there. The plan ends stable at the test temperature, recorded in the environment stream with the
    rest of the run. If it fails or is stopped the chamber is sent to the test temperature, so a cell
    is never left at the conditioning temperature.

    Parameters
    ----------
    chamber : TemperatureChamber
        The chamber; its lab-file band and hold time define "stable".
    rig : optional
        Recorded alongside.
    temperature : float
        Conditioning temperature, K (YAML: e.g. ``170 degC``); refused before anything runs at or
        above lithium's melting point (180.5 degC) when the cell contains lithium.
    hold : float
        Soak at the conditioning temperature once it is stable, s.
    test_temperature : float
        Temperature to return to and stabilise at, K.
    record_interval : float
        How often the chamber is read into the environment stream, s.
    contains_lithium : bool
        Whether the cell has lithium metal in it; filled in from the cell metadata.
    md : dict, optional
        Extra metadata for the start document.
    """
    environment = [d for d in (chamber, rig) if d is not None]
    finished = []

    def program() -> MsgGenerator[None]:
        yield from _reach(chamber, temperature, environment, record_interval, soak=hold)
        yield from _reach(chamber, test_temperature, environment, record_interval)
        finished.append(True)

    def back_to_test_temperature() -> MsgGenerator[None]:
        # Only the setpoint, and only if cut short: waiting here would hold up the RunEngine's cleanup.
        if not finished:
            yield from bps.abs_set(chamber, test_temperature)

    yield from bpp.finalize_wrapper(program(), back_to_test_temperature())
    reason = (f"held {hold / 3600:g} h at {temperature - 273.15:.1f} degC, "
              f"stable at {test_temperature - 273.15:.2f} degC")
    return Outcome("held", reason, chamber.clock.now(),
                   {"temperature": temperature, "hold": hold, "test_temperature": test_temperature},
                   {"temperature": "K", "hold": "s", "test_temperature": "K"})


@run_plan()
def pressure_program(
    rig: StackPressureRig,
    chamber: TemperatureChamber | None = None,
    *,
    pressure: Annotated[float, Unit("MPa", ge=0, le=100), LabLimit("pressure")],
    ramp_rate: Annotated[float | None, Unit("MPa/min", gt=0)] = None,
    hold: Annotated[float, Unit("min", ge=0)] = 0.0,
    release: bool = False,
    record_interval: Annotated[float, Unit("s", gt=0)] = 10.0,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Apply a stack pressure (ramped, or in one step), hold it recording the rig, and optionally release it.

    Parameters
    ----------
    rig : StackPressureRig
        The rig; its closed loop holds each setpoint.
    chamber : optional
        Recorded alongside.
    pressure : float
        Target, Pa (YAML: e.g. ``5 MPa``).
    ramp_rate : float, optional
        Ramp from the present pressure at this rate, Pa/s (YAML: e.g. ``1 MPa/min``); one step when
        not given.
    hold : float
        Time at the target, recorded in the environment stream, s.
    release : bool
        Release the pressure after the hold (the rig's ``on_finish`` applies otherwise).
    record_interval : float
        How often force, pressure and crosshead position are recorded, s; also the ramp's step time.
    md : dict, optional
        Extra metadata for the start document.
    """
    environment = [d for d in (rig, chamber) if d is not None]
    yield from bps.trigger_and_read(environment, name=ENVIRONMENT)
    start = yield from bps.rd(rig.pressure)
    for setpoint in _ramp(start, pressure, ramp_rate, record_interval):
        yield from _reach(rig, setpoint, environment, record_interval)
    yield from _hold(hold, environment, record_interval)
    reason = f"held {pressure / 1e6:g} MPa for {hold / 60:g} min"
    if release:
        yield from _reach(rig, 0.0, environment, record_interval)
        reason += ", then released"
    return Outcome("held", reason, rig.clock.now(), {"pressure": pressure, "hold": hold},
                   {"pressure": "Pa", "hold": "s"})


def _ramp(start: float, target: float, rate: float | None, interval: float) -> list[float]:
    """Return the setpoints of a ramp from ``start`` to ``target`` at ``rate`` per second, one per interval."""
    if rate is None:
        return [target]
    steps = max(math.ceil(abs(target - start) / (rate * interval) - 1e-9), 1)  # never faster than rate
    return [start + (target - start) * (k + 1) / steps for k in range(steps)]


def _reach(device, value: float, environment: list, record_interval: float, **options) -> MsgGenerator[None]:
    """Set ``device`` to ``value`` (``options`` go to its ``set``), recording ``environment`` until done."""
    status = yield from bps.abs_set(device, value, group=device.name, **options)
    yield from wait_recording(status, environment, record_interval, device.name)


def _hold(duration: float, environment: list, record_interval: float) -> MsgGenerator[None]:
    """Record the environment every ``record_interval`` for ``duration`` seconds."""
    elapsed = 0.0
    while elapsed < duration:
        step = min(record_interval, duration - elapsed)
        yield from bps.sleep(step)
        elapsed += step
        yield from bps.trigger_and_read(environment, name=ENVIRONMENT)
