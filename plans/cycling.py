"""Galvanostatic cycling: plating/stripping cycles with GEIS between half-cycles, and the critical
current density staircase."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

from devices.biologic.channel import PotentiostatChannel
from devices.biologic.techniques import CP, GEIS
from devices.chamber.device import TemperatureChamber
from devices.rig.device import StackPressureRig
from labctl.core.units import Count, LabLimit, Unit
from plans.guards import Guards
from plans.potentiostat import POTENTIOSTAT, Check, Ended, latest, timed_step
from plans.run import Outcome, run_plan
from plans.spectra import FitRecorder, ShortWatch, lead_resistance_of, measure_spectrum
from plans.stubs import ComputedValues

CRITICAL_CURRENT = "critical_current"
CCD_STEP = "ccd_step"  # one event per half-cycle of the staircase: its current density, direction and capacities
MA_CM2 = Unit("mA/cm^2")
MAH_CM2 = Unit("mAh/cm^2")
#: Units of the staircase's figures (per step in ``ccd_step``; the outcome in ``critical_current``, ``result``).
CCD_UNITS = {"density": "A/m^2", "direction": "", "half_cycle_capacity": "C/m^2", "cumulative_capacity": "C/m^2", "duration": "s",
             "critical_density": "A/m^2", "last_stable": "A/m^2", "short_time": "s"}


def _cycles_check(*, cycles: int, **_) -> None:
    if cycles < 1:
        raise ValueError(f"cycles must be at least 1, got {cycles}")


def _staircase_check(*, start_density: float, max_density: float, step_capacity: float | None = None,
                     step_duration: float | None = None, **_) -> None:
    if max_density < start_density:
        raise ValueError("max_density must not be below start_density")
    if (step_capacity is None) == (step_duration is None):
        raise ValueError("give exactly one of step_capacity (fixed capacity per half-cycle) and step_duration "
                         "(fixed time per half-cycle)")


@run_plan(check=_cycles_check)
def plate_strip(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber | None = None,
    rig: StackPressureRig | None = None,
    *,
    current_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100), LabLimit("current")],
    half_cycle: Annotated[float, Unit("h", gt=0)],
    cycles: Annotated[int, Count(ge=1, le=10_000)] = 1,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 1.0,
    geis_f_max: Annotated[float, Unit("Hz", gt=0, le=7e6)] = 7e6,
    geis_f_min: Annotated[float, Unit("Hz", gt=0)] = 0.5,
    geis_amplitude: Annotated[float, Unit("mA/cm^2", gt=0, le=100)] = 0.5,
    geis_points_per_decade: Annotated[int, Count(ge=1, le=100)] = 10,
    short_resistance: Annotated[float, Unit("ohm", gt=0)] = 600.0,
    short_fall: Annotated[float, Unit("%", gt=0, lt=100)] = 0.3,
    short_hold: Annotated[float, Unit("s", ge=0)] = 0.0,
    page_interval: Annotated[float, Unit("min", gt=0)] = 900.0,
    check_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    guards: Guards | None = None,
    lead_resistances: dict | None = None,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Cycle lithium back and forth at constant current, with a GEIS spectrum at open circuit between half-cycles.

    Each cycle plates on the working electrode for ``half_cycle`` then strips it for as long. A
    spectrum before the first half-cycle and after each one is fitted into ``impedance_fit``. The
    plan stops after ``cycles``, at the channel's voltage limit (voids at a stripping electrode) or
    at a short circuit (the rules of :class:`labctl.core.analysis.ShortDetector`); the cell is left at
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
    short_resistance, short_fall, short_hold : float
        The short rules of :func:`plans.electrochemistry.plate`: |Ewe| fallen by ``short_fall`` below
        its recent level to at most |I| x ``short_resistance`` (ohm), for ``short_hold`` s.
    page_interval : float
        How often rows are handed to storage and the environment read, s.
    check_interval : float
        How often the voltage rule (and the guards) look at the latest sample, s.
    guards : Guards, optional
        What to do when the temperature or pressure leaves its band, or the potentiostat reaches its
        voltage limit (:mod:`plans.guards`), as in ``plate``; a paused half-cycle resumes for the
        time it has left. From the experiment file's ``guards`` section. Without them a voltage
        limit ends the plan.
    lead_resistances : dict, optional
        Lead resistance (ohm) by instrument role, from the lab file; bounds the fits' R0.
    md : dict, optional
        Extra metadata for the start document.
    """
    guards = (guards or Guards()).for_step(check_interval)
    environment = [d for d in (chamber, rig) if d is not None]
    current = current_density * electrode_area
    geis = GEIS(bias=0.0, amplitude=geis_amplitude * electrode_area, f_max=geis_f_max, f_min=geis_f_min,
                points_per_decade=geis_points_per_decade)
    from labctl.core.analysis import ShortDetector  # lazily: `labctl check` reads the plans without scipy

    detector = ShortDetector(current, short_resistance=short_resistance, fall=short_fall, hold=short_hold)
    recorder = FitRecorder(potentiostat, electrode_area, lead_resistance=lead_resistance_of(lead_resistances))
    watch = ShortWatch(recorder, detector)

    def voltage_check() -> MsgGenerator[str | tuple | None]:
        reading = yield from latest(potentiostat.ewe)
        return detector.add_voltage(reading["timestamp"], reading["value"]) or (
            (yield from guards.breach(chamber, rig)) if guards else None
        )

    yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
    yield from watch.record((yield from measure_spectrum(potentiostat.eis, geis, chamber, rig)))
    detector.open_circuit_voltage = watch.last_ewe_dc
    reason = f"{cycles} cycles of {2 * half_cycle / 3600:g} h at {MA_CM2.from_si(current_density):g} mA/cm^2"
    ended_by, halves = "cycles", 2 * cycles
    for half in range(2 * cycles):
        sign = -1 if half % 2 == 0 else 1  # negative current plates on the working electrode
        end, stop, _ = yield from timed_step(
            potentiostat, lambda seconds: CP(sign * current, seconds, sample_interval), half_cycle, environment,
            sample_interval=sample_interval, page_interval=page_interval, check=voltage_check,
            check_interval=check_interval, guards=guards, chamber=chamber, rig=rig,
        )
        shorted = bool(stop) and not stop.startswith("guard:")
        sweep = yield from measure_spectrum(potentiostat.eis, geis, chamber, rig)
        stop = stop or (yield from watch.record(sweep, shorted=shorted))
        where = f"in half-cycle {half + 1} of {2 * cycles}"
        if stop or end == "voltage limit":
            reason = f"{stop or 'voltage limit of the potentiostat reached'} {where}"
            ended_by = "guard" if stop and stop.startswith("guard:") else "short" if stop else "voltage_limit"
            halves = half + 1
            break
    return Outcome(ended_by, reason, potentiostat.clock.now(), {"half_cycles": halves})


@run_plan(check=_staircase_check)
def ccd_staircase(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber | None = None,
    rig: StackPressureRig | None = None,
    *,
    start_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100), LabLimit("current")],
    density_step: Annotated[float, Unit("mA/cm^2", gt=0, le=100)],
    max_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100), LabLimit("current")],
    step_capacity: Annotated[float | None, Unit("mAh/cm^2", gt=0)] = None,
    step_duration: Annotated[float | None, Unit("h", gt=0)] = None,
    cycles_per_step: Annotated[int, Count(ge=1, le=100)] = 1,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 1.0,
    short_drop: Annotated[float, Unit("%", gt=0, lt=100)] = 0.5,
    short_hold: Annotated[float, Unit("s", ge=0)] = 60.0,
    page_interval: Annotated[float, Unit("min", gt=0)] = 900.0,
    check_interval: Annotated[float, Unit("s", gt=0)] = 10.0,
    guards: Guards | None = None,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Cycle at increasing current densities, symmetric plating and stripping half-cycles at each
    step, until the cell shorts or a limit.

    At each step the cell is cycled ``cycles_per_step`` times at the step's current density: a
    half-cycle plating lithium on the working electrode, then one stripping it back, as the
    standards paper cycles its staircase ("Standardizing critical current density measurements in
    lithium garnets", Commun. Chem. 2023). Each half-cycle passes either a fixed areal capacity
    (``step_capacity``: the fixed-capacity protocol, the half-cycle lasting capacity / current
    density) or lasts a fixed time (``step_duration``: the capacity per half-cycle grows with the
    current density); give exactly one. A critical current density is only comparable beside the
    areal capacity per half-cycle and the cumulative areal capacity, so each half-cycle's current
    density, direction (-1 plating on the working electrode, +1 stripping), the capacity it passed
    and the cumulative capacity (all that passed either way; both from the channel's charge, the
    integral of I dt over its rows) go into the ``ccd_step`` stream, one event per half-cycle, and
    the outcome carries the critical step's capacity per half-cycle (the protocol's) and the
    cumulative capacity beside the critical current density: all that passed until the circuit
    opened, so at a short including the ``short_hold`` it took to confirm it.

    The critical current density is the step during which the cell short-circuited, in either
    direction: its resistance V / j fell by ``short_drop`` from one check to the next and stayed down for ``short_hold``
    (:class:`labctl.core.analysis.CriticalCurrentDetector`). Judged against the check before, not the
    staircase's start, the rule holds on lithiophobic cells too, whose resistance falls several-fold
    but gradually as the first lithium wets the interface; the hold lets soft shorts pass. The
    result is stored as one event of the ``critical_current`` stream (and in ``result``) and quoted in
    the stop reason with both capacities.
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
    step_capacity : float, optional
        Charge passed per half-cycle (areal capacity per half-cycle), C/m^2 (YAML: e.g. ``0.1 mAh/cm^2``).
    step_duration : float, optional
        Instead, the duration of each half-cycle, s (YAML: e.g. ``0.5 h``); its capacity is density x duration.
    cycles_per_step : int
        Plate-strip cycles at each current density (two half-cycles each).
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
        How often the voltage is checked for a short (and the guards look), s.
    guards : Guards, optional
        What to do when the temperature or pressure leaves its band, or the potentiostat reaches its
        voltage limit (:mod:`plans.guards`), as in ``plate``; a paused step of the staircase resumes
        for the time it has left. From the experiment file's ``guards`` section. Without them a
        voltage limit ends the staircase.
    md : dict, optional
        Extra metadata for the start document.
    """
    guards = (guards or Guards()).for_step(check_interval)
    environment = [d for d in (chamber, rig) if d is not None]
    from labctl.core.analysis import CriticalCurrentDetector  # lazily: `labctl check` reads the plans without scipy

    detector = CriticalCurrentDetector(drop=short_drop, hold=short_hold)
    result = ComputedValues(CRITICAL_CURRENT, source="labctl.core.analysis.CriticalCurrentDetector", units=CCD_UNITS)

    def check(density: float) -> Check:
        def short() -> MsgGenerator[str | tuple | None]:
            reading = yield from latest(potentiostat.ewe)
            # Ewe has the sign of the current (plating: both negative), so Ewe / j is the cell's resistance.
            found = detector.add(reading["timestamp"], density, reading["value"])
            if found is not None:
                return "short circuit"
            return (yield from guards.breach(chamber, rig)) if guards else None
        return short

    yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
    steps = ComputedValues(CCD_STEP, source="potentiostat charge", units=CCD_UNITS)
    charge_before = yield from bps.rd(potentiostat.charge)
    ended, cumulative = Ended("completed", None, 0.0), 0.0
    halves = [(density, sign) for density in _staircase(start_density, density_step, max_density)
              for _ in range(cycles_per_step) for sign in (-1, 1)]  # negative current plates on the working electrode
    for density, sign in halves:
        duration = step_duration if step_capacity is None else step_capacity / density
        ended = yield from timed_step(
            potentiostat, lambda seconds: CP(sign * density * electrode_area, seconds, sample_interval),
            duration, environment, sample_interval=sample_interval, page_interval=page_interval,
            check=check(sign * density), check_interval=check_interval, guards=guards, chamber=chamber, rig=rig,
        )
        # The half-cycle's capacity as measured: the charge its rows carry (the last page is collected).
        charge = yield from bps.rd(potentiostat.charge)
        passed, charge_before = abs(charge - charge_before) / electrode_area, charge
        cumulative += passed
        steps.update({"density": density, "direction": sign, "half_cycle_capacity": passed,
                      "cumulative_capacity": cumulative, "duration": ended.ran}, potentiostat.clock.now())
        yield from bps.create(name=CCD_STEP)
        yield from bps.read(steps)
        yield from bps.save()
        if ended.stop or ended.end == "voltage limit":
            break
    found = detector.outcome()
    figures = _ccd_figures(found, cumulative, step_capacity, step_duration)
    reason = yield from _report(found, figures, ended.end, result)
    guarded = bool(ended.stop and ended.stop.startswith("guard:"))
    if guarded:
        reason = f"{ended.stop}; {reason}"
    ended_by = ("short" if found.density is not None else "guard" if guarded
                else "voltage_limit" if ended.end == "voltage limit" else "max_density")
    return Outcome(ended_by, reason, potentiostat.clock.now(), figures,
                   {k: CCD_UNITS[k] for k in figures})


def _ccd_figures(found, cumulative: float, step_capacity: float | None, step_duration: float | None) -> dict:
    """The staircase's outcome (SI, NaN where not determined): the critical step's capacity per
    half-cycle as the protocol set it, and the cumulative capacity passed until the staircase ended."""
    nan = float("nan")
    half_cycle = (None if found.density is None
                  else step_capacity if step_capacity is not None else found.density * step_duration)
    values = {"critical_density": found.density, "last_stable": found.last_stable, "short_time": found.time,
              "half_cycle_capacity": half_cycle, "cumulative_capacity": cumulative}
    return {k: nan if v is None else v for k, v in values.items()}


def _staircase(start: float, step: float, stop: float) -> list[float]:
    count = int((stop - start) / step * (1 + 1e-9)) + 1
    return [start + k * step for k in range(count)]


def _report(found, figures: dict, end, result: ComputedValues) -> MsgGenerator[str]:
    """Store the staircase's outcome and return the stop reason, the CCD quoted with its capacities."""
    held = "none" if found.last_stable is None else f"{MA_CM2.from_si(found.last_stable):g} mA/cm^2"
    result.update(figures, found.time or 0.0)
    yield from bps.create(name=CRITICAL_CURRENT)
    yield from bps.read(result)
    yield from bps.save()
    cumulative = f"{MAH_CM2.from_si(figures['cumulative_capacity']):.4g} mAh/cm^2 cumulative"
    if found.density is not None:
        per_half_cycle = f"{MAH_CM2.from_si(figures['half_cycle_capacity']):.4g} mAh/cm^2 per half-cycle"
        return (f"critical current density {MA_CM2.from_si(found.density):g} mA/cm^2 at {per_half_cycle}, "
                f"{cumulative} (last stable: {held})")
    if end == "voltage limit":
        return f"voltage limit of the potentiostat reached, no short (last stable: {held}; {cumulative})"
    return f"no short up to {held} ({cumulative})"
