"""Galvanostatic cycling: plating/stripping cycles with GEIS between half-cycles, and the critical
current density staircase."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from bluesky.utils import Msg

from devices.biologic.techniques import CP, GEIS
from labctl.analysis import CriticalCurrentDetector, ShortDetector
from labctl.units import Count, Unit
from plans.electrochemistry import POTENTIOSTAT, SpectrumFitter, _safely, measure_impedance, run_technique
from plans.stubs import ComputedValues, plan_metadata

CRITICAL_CURRENT = "critical_current"
MA_CM2 = Unit("mA/cm^2")


def plate_strip(
    potentiostat,
    chamber=None,
    rig=None,
    *,
    current_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100)],
    half_cycle: Annotated[float, Unit("h", gt=0)],
    cycles: Annotated[int, Count(ge=1, le=10_000)] = 1,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 1.0,
    geis_f_max: Annotated[float, Unit("Hz", gt=0, le=7e6)] = 7e6,
    geis_f_min: Annotated[float, Unit("Hz", gt=0)] = 0.5,
    geis_amplitude: Annotated[float, Unit("mA/cm^2", gt=0, le=100)] = 0.5,
    geis_points_per_decade: Annotated[int, Count(ge=1, le=100)] = 10,
    short_voltage: Annotated[float, Unit("mV", gt=0)] = 0.01,
    short_hold: Annotated[float, Unit("s", ge=0)] = 60.0,
    page_interval: Annotated[float, Unit("min", gt=0)] = 900.0,
    check_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    md: dict | None = None,
):
    """Cycle lithium back and forth at constant current, with a GEIS spectrum at open circuit between half-cycles.

    Each cycle plates on the working electrode for ``half_cycle`` then strips it for as long. A
    spectrum before the first half-cycle and after each one is fitted into ``impedance_fit``. The
    plan stops after ``cycles``, at the channel's voltage limit (voids at a stripping electrode) or
    at a short circuit (the rules of :class:`labctl.analysis.ShortDetector`); the cell is left at
    open circuit.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on.
    chamber, rig : optional
        Read into the environment stream with every page.
    current_density : float
        Current density of both half-cycles, A/m^2 (YAML: e.g. ``0.2 mA/cm^2``).
    half_cycle : float
        Duration of each half-cycle, s (YAML: e.g. ``1 h``).
    cycles : int
        Number of plate-strip cycles.
    electrode_area : float
        Electrode area, m^2; filled in from the cell metadata.
    sample_interval : float
        Time between voltage samples, s.
    geis_f_max, geis_f_min : float
        Sweep limits, Hz.
    geis_amplitude : float
        Sine amplitude as a current density, A/m^2.
    geis_points_per_decade : int
        Frequencies per decade.
    short_voltage, short_hold : float
        The voltage rule: a short when |Ewe| stays below ``short_voltage`` (V) for ``short_hold`` s.
    page_interval : float
        How often rows are handed to storage and the environment read, s.
    check_interval : float
        How often the voltage rule looks at the latest sample, s.
    md : dict, optional
        Extra metadata for the start document.
    """
    if cycles < 1:
        raise ValueError(f"cycles must be at least 1, got {cycles}")
    args = {k: v for k, v in locals().items() if k not in ("potentiostat", "chamber", "rig", "md")}
    environment = [d for d in (chamber, rig) if d is not None]
    current = current_density * electrode_area
    geis = GEIS(bias=0.0, amplitude=geis_amplitude * electrode_area, f_max=geis_f_max, f_min=geis_f_min,
                points_per_decade=geis_points_per_decade)
    detector = ShortDetector(collapse_voltage=short_voltage, collapse_hold=short_hold)
    fitter = SpectrumFitter(potentiostat, electrode_area, detector)
    outcome = {}

    def voltage_check():
        reading = (yield Msg("read", potentiostat.ewe))[potentiostat.ewe.name]
        return detector.add_voltage(reading["timestamp"], reading["value"])

    def body():
        yield from bps.open_run(plan_metadata("plate_strip", args, md))
        yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
        yield from fitter.record((yield from measure_impedance(potentiostat, geis)))
        reason = f"{cycles} cycles of {2 * half_cycle / 3600:g} h at {MA_CM2.from_si(current_density):g} mA/cm^2"
        for half in range(2 * cycles):
            sign = -1 if half % 2 == 0 else 1  # negative current plates on the working electrode
            end, stop = yield from run_technique(
                potentiostat, CP(sign * current, half_cycle, sample_interval), environment,
                page_interval=page_interval, check=voltage_check, check_interval=check_interval,
            )
            stop = stop or (yield from fitter.record((yield from measure_impedance(potentiostat, geis))))
            where = f"in half-cycle {half + 1} of {2 * cycles}"
            if stop or end == "voltage limit":
                reason = f"{stop or 'voltage limit of the potentiostat reached'} {where}"
                break
        outcome["reason"] = reason
        yield from bps.close_run(exit_status="success", reason=reason)

    yield from _safely(potentiostat, body())
    return outcome.get("reason")


def ccd_staircase(
    potentiostat,
    chamber=None,
    rig=None,
    *,
    start_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100)],
    density_step: Annotated[float, Unit("mA/cm^2", gt=0, le=100)],
    max_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100)],
    step_capacity: Annotated[float, Unit("mAh/cm^2", gt=0)],
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 1.0,
    short_drop: Annotated[float, Unit("%", gt=0, lt=100)] = 0.5,
    short_hold: Annotated[float, Unit("s", ge=0)] = 60.0,
    page_interval: Annotated[float, Unit("min", gt=0)] = 900.0,
    check_interval: Annotated[float, Unit("s", gt=0)] = 10.0,
    md: dict | None = None,
):
    """Plate at increasing current densities, ``step_capacity`` per step, until the cell shorts or a limit.

    The critical current density is the step during which the cell short-circuited: its resistance
    V / j fell by ``short_drop`` from one check to the next and stayed down for ``short_hold``
    (:class:`labctl.analysis.CriticalCurrentDetector`). Judged against the check before, not the
    staircase's start, the rule holds on lithiophobic cells too, whose resistance falls several-fold
    but gradually as the first lithium wets the interface; the hold lets soft shorts pass. The
    result is stored as one event of the ``critical_current`` stream and quoted in the stop reason.
    Reaching the channel's voltage limit also ends the staircase (reported, with no critical value).
    The cell is left at open circuit.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on; lithium plates on its working electrode.
    chamber, rig : optional
        Read into the environment stream with every page.
    start_density, density_step, max_density : float
        The staircase: first step, increment and last step, A/m^2 (YAML: e.g. ``0.1 mA/cm^2``).
    step_capacity : float
        Charge plated per step, C/m^2 (YAML: e.g. ``0.1 mAh/cm^2``).
    electrode_area : float
        Electrode area, m^2; filled in from the cell metadata.
    sample_interval : float
        Time between voltage samples, s.
    short_drop : float
        Fall of V / j from one check to the next that counts as a collapse (fraction; YAML ``50 %``).
    short_hold : float
        How long the collapse must last to be a short, s; longer than a soft short (tens of s).
    page_interval : float
        How often rows are handed to storage and the environment read, s.
    check_interval : float
        How often the voltage is checked for a short, s.
    md : dict, optional
        Extra metadata for the start document.
    """
    if max_density < start_density:
        raise ValueError("max_density must not be below start_density")
    args = {k: v for k, v in locals().items() if k not in ("potentiostat", "chamber", "rig", "md")}
    environment = [d for d in (chamber, rig) if d is not None]
    densities = _staircase(start_density, density_step, max_density)
    detector = CriticalCurrentDetector(drop=short_drop, hold=short_hold)
    result = ComputedValues(CRITICAL_CURRENT, source="labctl.analysis.CriticalCurrentDetector")
    outcome = {}

    def check(density):
        def short():
            reading = (yield Msg("read", potentiostat.ewe))[potentiostat.ewe.name]
            # Plating: Ewe < 0, so -Ewe / j is the cell's (positive) resistance.
            found = detector.add(reading["timestamp"], density, -reading["value"])
            return "short circuit" if found is not None else None
        return short

    def body():
        yield from bps.open_run(plan_metadata("ccd_staircase", args, md))
        yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
        end = None
        for density in densities:
            duration = step_capacity / density
            end, stop = yield from run_technique(
                potentiostat, CP(-density * electrode_area, duration, sample_interval), environment,
                page_interval=page_interval, check=check(density), check_interval=min(check_interval, duration),
            )
            if stop or end == "voltage limit":
                break
        outcome["reason"] = yield from _report(detector.outcome(), end, result)
        yield from bps.close_run(exit_status="success", reason=outcome["reason"])

    yield from _safely(potentiostat, body())
    return outcome.get("reason")


def _staircase(start: float, step: float, stop: float) -> list[float]:
    count = int((stop - start) / step * (1 + 1e-9)) + 1
    return [start + k * step for k in range(count)]


def _report(found, end, result: ComputedValues):
    """Store the staircase's outcome and return the stop reason."""
    nan = float("nan")
    held = "none" if found.last_stable is None else f"{MA_CM2.from_si(found.last_stable):g} mA/cm^2"
    result.update({"critical_density": nan if found.density is None else found.density,
                   "last_stable": nan if found.last_stable is None else found.last_stable,
                   "short_time": nan if found.time is None else found.time}, found.time or 0.0)
    yield from bps.create(name=CRITICAL_CURRENT)
    yield from bps.read(result)
    yield from bps.save()
    if found.density is not None:
        return f"critical current density {MA_CM2.from_si(found.density):g} mA/cm^2 (last stable: {held})"
    if end == "voltage limit":
        return f"voltage limit of the potentiostat reached, no short (last stable: {held})"
    return f"no short up to {held}"
