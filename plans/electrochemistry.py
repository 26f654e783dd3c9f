"""Electrochemistry plans: rest at open circuit, and galvanostatic plating with operando GEIS."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

from devices.biologic.channel import PotentiostatChannel
from devices.biologic.techniques import CP, GEIS, OCV
from devices.chamber.device import TemperatureChamber
from devices.rig.device import StackPressureRig
from labctl.core.units import Count, LabLimit, Unit
from plans.guards import Guards
from plans.potentiostat import POTENTIOSTAT, latest, timed_step
from plans.run import Outcome, run_plan
from plans.spectra import FitRecorder, ShortWatch, lead_resistance_of, measure_spectrum


@run_plan()
def rest(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber | None = None,
    rig: StackPressureRig | None = None,
    *,
    duration: Annotated[float, Unit("min", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 10.0,
    page_interval: Annotated[float, Unit("s", gt=0)] = 300.0,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Rest the cell at open circuit, recording its voltage.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on.
    chamber, rig : optional
        Recorded alongside in the environment stream.
    duration : float
        How long to rest, s (YAML: e.g. ``30 min``).
    sample_interval : float
        Time between voltage samples, s.
    page_interval : float
        How often measured rows are handed to storage (and the environment read), s.
    md : dict, optional
        Extra metadata for the start document.
    """
    environment = [d for d in (chamber, rig) if d is not None]
    yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
    # A pause stops the technique ("stopped"); after RE.resume() the rest goes on for the time left.
    end, _, rested = yield from timed_step(potentiostat, lambda seconds: OCV(seconds, sample_interval), duration,
                                           environment, sample_interval=sample_interval, page_interval=page_interval)
    return Outcome(end.replace(" ", "_"), f"rest {end} after {rested / 60:g} min", potentiostat.clock.now())


@run_plan()
def plate(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber | None = None,
    rig: StackPressureRig | None = None,
    *,
    current_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100), LabLimit("current")],
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 1.0,
    geis_interval: Annotated[float, Unit("min", gt=0)] = 900.0,
    geis_f_max: Annotated[float, Unit("Hz", gt=0, le=7e6)] = 7e6,
    geis_f_min: Annotated[float, Unit("Hz", gt=0)] = 0.5,
    geis_amplitude: Annotated[float, Unit("mA/cm^2", gt=0, le=100)] = 0.5,
    geis_points_per_decade: Annotated[int, Count(ge=1, le=100)] = 10,
    max_capacity: Annotated[float | None, Unit("mAh/cm^2", gt=0)] = None,
    max_duration: Annotated[float, Unit("h", gt=0)] = 86400.0,
    short_resistance: Annotated[float, Unit("ohm", gt=0)] = 600.0,
    short_fall: Annotated[float, Unit("%", gt=0, lt=100)] = 0.3,
    short_hold: Annotated[float, Unit("s", ge=0)] = 0.0,
    short_drop: Annotated[float, Unit("%", gt=0, lt=100)] = 0.3,
    page_interval: Annotated[float, Unit("min", gt=0)] = 900.0,
    check_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    guards: Guards | None = None,
    lead_resistances: dict | None = None,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Plate lithium at constant current with a GEIS spectrum every ``geis_interval``, until a stop.

    Constant-current segments alternate with galvanostatic impedance sweeps whose DC bias is the
    plating current, so plating never pauses for a measurement (operando GEIS, as in the seed
    paper). The plan stops at ``max_capacity``, at ``max_duration``, at the channel's voltage
    limit, or at a short circuit, recording which in the run's stop document. Whatever happens,
    the cell is left at open circuit.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on; lithium plates on its working electrode (negative current).
    chamber, rig : optional
        Read into the environment stream with every page and during every sweep; their temperature
        and pressure over each sweep are stored beside its fit (NaN without them).
    current_density : float
        Plating current density, A/m^2 (YAML: e.g. ``0.5 mA/cm^2``).
    electrode_area : float
        Electrode area, m^2; filled in from the cell metadata when run from YAML.
    sample_interval : float
        Time between voltage samples, s.
    geis_interval : float
        Plating time between impedance spectra, s.
    geis_f_max, geis_f_min : float
        Sweep limits, Hz (the paper: 7 MHz to 500 mHz).
    geis_amplitude : float
        Sine amplitude as a current density, A/m^2 (the paper: 0.05 mA/cm^2).
    geis_points_per_decade : int
        Frequencies per decade.
    max_capacity : float, optional
        Stop after plating this much charge per area, C/m^2 (YAML: e.g. ``5 mAh/cm^2``).
    max_duration : float
        Stop after this long, s.
    short_resistance, short_fall, short_hold, short_drop : float
        Short-circuit detection (:class:`labctl.core.analysis.ShortDetector`), at every current density:
        the voltage rule stops when, at a check, |Ewe| (from its open-circuit value) has fallen by
        ``short_fall`` (fraction; YAML ``30 %``) below its recent level and |Ewe| / |I| is at most
        ``short_resistance`` (ohm; the band a lithium filament puts the cell in, YAML ``600 ohm``),
        for ``short_hold`` s (0: at the first such check); the impedance rule when the
        low-frequency resistance fell by ``short_drop`` below the larger of the previous two
        spectra's and is at most ``short_resistance``. Soft shorts (kohm, seconds), wetting and
        voiding stay outside the band. Where the cell's own resistance nears the band neither rule
        stops, and the stop reason says the detection was not determined.
        ``short_voltage`` (an absolute threshold, blind above ~0.7 mA/cm^2) is gone.
    page_interval : float
        How often rows are handed to storage and the environment read, s.
    check_interval : float
        How often the voltage rule (and the guards) look at the latest sample, s.
    guards : Guards, optional
        What to do when the chamber temperature or the stack pressure leaves its band, or the
        potentiostat reaches its voltage limit (:mod:`plans.guards`); from the experiment file's
        ``guards`` section. Without them a voltage limit ends the step. A step the guards end
        closes with exit status ``fail``, as one ended by the voltage limit.
    lead_resistances : dict, optional
        Lead resistance (ohm) by instrument role, from the lab file; bounds the fits' R0.
    md : dict, optional
        Extra metadata for the start document.
    """
    current = -current_density * electrode_area
    guards = (guards or Guards()).for_step(check_interval)
    environment = [d for d in (chamber, rig) if d is not None]
    geis = GEIS(
        bias=current, amplitude=geis_amplitude * electrode_area, f_max=geis_f_max, f_min=geis_f_min,
        points_per_decade=geis_points_per_decade,
    )
    at_rest = GEIS(**{**geis.__dict__, "bias": 0.0})
    from labctl.core.analysis import ShortDetector  # lazily: `labctl check` reads the plans without scipy

    detector = ShortDetector(current, short_resistance=short_resistance, fall=short_fall, hold=short_hold,
                             drop=short_drop)
    recorder = FitRecorder(potentiostat, electrode_area, lead_resistance=lead_resistance_of(lead_resistances))
    watch = ShortWatch(recorder, detector)

    def capacity() -> MsgGenerator[float]:
        charge = yield from bps.rd(potentiostat.charge)
        return abs(charge) / electrode_area

    def voltage_check() -> MsgGenerator[str | tuple | None]:
        reading = yield from latest(potentiostat.ewe)
        return detector.add_voltage(reading["timestamp"], reading["value"]) or (
            (yield from guards.breach(chamber, rig)) if guards else None
        )

    yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
    yield from watch.record((yield from measure_spectrum(potentiostat.eis, at_rest, chamber, rig)))
    detector.open_circuit_voltage = watch.last_ewe_dc  # a tracer cell's LiMg adds a few mV
    elapsed, end, stop = 0.0, None, None
    while True:
        plated = yield from capacity()
        by_time, by_capacity = _time_left(plated, elapsed, max_capacity, max_duration, current_density)
        segment = min(geis_interval, by_time, by_capacity)
        if segment < sample_interval:  # less than one sample left: a limit is reached
            reason = _capacity_reason(plated) if by_capacity <= by_time else _time_reason(elapsed)
            break
        end, stop, ran = yield from timed_step(
            potentiostat, lambda seconds: CP(current, seconds, sample_interval), segment, environment,
            sample_interval=sample_interval, page_interval=page_interval, check=voltage_check,
            check_interval=check_interval, guards=guards, chamber=chamber, rig=rig,
        )
        elapsed += ran
        # A cell the voltage rule or a guard has put at open circuit is measured at zero bias.
        shorted = bool(stop) and not stop.startswith("guard:")
        sweep = yield from measure_spectrum(potentiostat.eis, at_rest if stop else geis, chamber, rig)
        short = yield from watch.record(sweep, shorted=shorted)
        stop = stop or short
        plated = yield from capacity()
        reason = _limit_reason(end, plated, max_capacity, elapsed, max_duration)
        if stop:
            hours = plated / current_density / 3600
            reason = f"{stop}; {Unit('mAh/cm^2').from_si(plated):.3f} mAh/cm^2 plated in {hours:.2f} h"
        if reason:
            break
    if not stop and detector.undetermined:  # say that a short could have gone unseen, and why
        reason = f"{reason}; short detection not determined: {detector.undetermined}"
    ended_by = _plating_ended_by(stop, end, reason)
    values, units = _plating_figures(ended_by, plated, current_density)
    return Outcome(ended_by, reason, potentiostat.clock.now(), values, units)


def _plating_ended_by(stop, end: str | None, reason: str) -> str:
    """Say why plating ended, as the ``result`` stream's ``ended_by`` code."""
    if end == "voltage limit" and (not stop or stop.startswith("guard:")):
        return "voltage_limit"  # the cell lost contact (or the guards ended the step on it)
    if stop:
        return "guard" if stop.startswith("guard:") else "short"
    return "capacity" if reason.startswith("capacity") else "time"


PLATING_UNITS = {"plated_capacity": "C/m^2", "plating_time": "s", "time_to_short": "s",
                 "capacity_at_short": "C/m^2"}


def _plating_figures(ended_by: str, plated: float, density: float) -> tuple[dict, dict]:
    """The plating result's values (NaN for a short that did not happen) and their units.

    Times are plating times, charge over current (the GEIS sweeps plate too: their bias is the
    plating current), as the stop reason quotes them.
    """
    nan, seconds = float("nan"), plated / density
    shorted = ended_by == "short"
    return ({"plated_capacity": plated, "plating_time": seconds, "time_to_short": seconds if shorted else nan,
             "capacity_at_short": plated if shorted else nan}, PLATING_UNITS)


def _time_left(plated: float, elapsed: float, max_capacity, max_duration: float, density: float) -> tuple:
    """Return the plating time left before the time limit and before the capacity limit, s."""
    by_capacity = (max_capacity - plated) / density if max_capacity is not None else float("inf")
    return max_duration - elapsed, by_capacity


def _limit_reason(end: str, plated: float, max_capacity, elapsed: float, max_duration: float) -> str | None:
    """Say which limit ended plating after a segment, or None to go on."""
    if end == "voltage limit":
        return "voltage limit of the potentiostat reached"
    if max_capacity is not None and plated >= max_capacity * (1 - 1e-9):
        return _capacity_reason(plated)
    if elapsed >= max_duration * (1 - 1e-9):
        return _time_reason(elapsed)
    return None


def _capacity_reason(plated: float) -> str:
    return f"capacity reached: {Unit('mAh/cm^2').from_si(plated):.3f} mAh/cm^2"


def _time_reason(elapsed: float) -> str:
    return f"time limit reached: {elapsed / 3600:.2f} h"
