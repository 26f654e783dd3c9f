"""One rule set for every setpoint and every plan call, wherever it comes from.

An experiment file's steps, the lab file's defaults (the chamber's ``safe_setpoint``), the
experiment's guards, and a plan called by hand in the shell or taken from a queue are all checked
by the functions below, against the lab's limits, the instrument each plan runs on, the cell (a
cell with lithium in it never reaches 180.5 degC, :class:`labctl.core.errors.LithiumWouldMelt`) and the
budgets that keep a step's size finite. ``labctl.config`` calls them at load, with file, line and
field; :func:`refuse_unsafe_call` raises on one plan call. Values are SI, as plans take them.

Each rule returns ``(field, message)`` pairs: ``field`` a tuple locating the value among the plan's
arguments (``("temperatures", 2)``), the message saying what was asked and what is allowed.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

from labctl.core.errors import LITHIUM_MELTING_POINT, LabctlError, LithiumWouldMelt
from labctl.core.units import Count, Unit, lab_limits

Problem = tuple[tuple, str]

# ---- budgets: what one step may ask of memory and of the (dry) run ------------------------------
MAX_ROWS = 5_000_000  # samples per step run (duration / sample_interval): 58 days at 1 s; ~4 min of dry run
MAX_WAKEUPS = 1_000_000  # checks, pages or records per step run (duration / interval)
MAX_SPECTRA = 20_000  # impedance spectra per step run, each fitted live
MAX_SWEEP_POINTS = 1_000  # frequencies in one sweep (decades x points per decade)
MIN_SWEEP_POINTS = 10  # so the equivalent-circuit fit of each spectrum (up to 7 parameters) is determined
MAX_STAIRS = 1_000  # current densities in one staircase
MAX_STEP_TIME = 365 * 86400.0  # s: one step run at most a year
# The longest a set may wait for its device to settle, recording all the while: the devices' own
# timeouts (devices.chamber.device.TemperatureChamber, devices.rig.device.StackPressureRig).
CHAMBER_SETTLE = 4 * 3600.0  # s
RIG_SETTLE = 3600.0  # s


def show(value: float, display: str) -> str:
    """Return ``value`` (SI) as written in ``display`` units, e.g. ``"180.5 degC"``."""
    return f"{Unit(display).from_si(value):.4g} {display}"


# =================================================================================================
# Setpoints: temperatures, pressures, currents and voltages against the lab and the cell
# =================================================================================================


def temperature_problems(value: float, cell, lab) -> list[str]:
    """Return why a chamber setpoint (K) is refused: outside the chamber's range, or melting the cell's lithium."""
    problems = _outside(value, lab.instruments.chamber.temperature_range, "degC", "the chamber's range", lab,
                        "temperature")
    if LithiumWouldMelt.refuses(value, cell.contains_lithium):  # the chamber refuses it too, as a last line
        problems.append(lithium_message(value, cell))
    return problems


def lithium_message(value: float, cell) -> str:
    """Why a temperature is refused for a cell with lithium in it."""
    return (f"{show(value, 'degC')} would melt the cell's lithium (Li melts at 180.5 degC): keep a cell with "
            f"{cell.electrode_material} electrodes below 180.5 degC")


def _outside(value: float, bounds: tuple[float, float], display: str, what: str, lab, noun: str) -> list[str]:
    low, high = bounds
    if low <= value <= high:
        return []
    return [f"{show(value, display)} is outside {what} [{show(low, display)}, {show(high, display)}] "
            f"(lab {lab.name!r}): choose a {noun} inside it"]


def chamber_range_problems(kind: str, temperature_range: tuple[float, float]) -> list[tuple[str, str]]:
    """Return why a lab file's chamber range passes the controller's own setpoint limits (K in, at load).

    Every chamber labctl drives (each Modbus controller's target-setpoint register, and the
    simulator's rated range) takes setpoints from -40 to 200 degC; a lab range past them would
    pass ``labctl check`` and be refused by the controller mid-run.
    """
    from devices.chamber.controllers import CELSIUS_ZERO, SETPOINT_LIMITS  # lazily: the rules import without drivers

    own = tuple(limit + CELSIUS_ZERO for limit in SETPOINT_LIMITS)
    low, high = temperature_range
    if own[0] - 1e-9 <= low and high <= own[1] + 1e-9:
        return []
    return [("temperature_range", f"[{show(low, 'degC')}, {show(high, 'degC')}] passes the {kind} controller's own "
                                  f"setpoint limits: allowed within [{show(own[0], 'degC')}, {show(own[1], 'degC')}]")]


def pressure_problems(value: float, cell, lab) -> list[str]:
    """Return why a stack pressure (Pa) is refused: outside the rig's range."""
    return _outside(value, lab.instruments.rig.pressure_range, "MPa", "the rig's range", lab, "pressure")


def current_problems(value: float, cell, lab) -> list[str]:
    """Return why a current density (A/m^2) is refused: on the cell's electrode, above the potentiostat's limit."""
    current, limit = abs(value) * cell.electrode_area_m2, lab.instruments.potentiostat.current_limit
    if current <= limit:
        return []
    return [f"{show(value, 'mA/cm^2')} on {show(cell.electrode_area_m2, 'cm^2')} is {show(current, 'mA')}, above the "
            f"potentiostat's current limit of {show(limit, 'mA')} (lab {lab.name!r}): lower the current density "
            f"or use a smaller electrode"]


def voltage_problems(value: float, cell, lab) -> list[str]:
    """Return why a DC voltage (V) is refused: outside the potentiostat's voltage window."""
    return _outside(value, lab.instruments.potentiostat.voltage_window, "V", "the potentiostat's voltage window",
                    lab, "voltage")


# The rule of each lab limit a plan argument declares in its annotation (``LabLimit("current")``
# beside its ``Unit``; a list: each item), whatever the argument is called.
LIMITS: dict[str, Callable[[float, Any, Any], list[str]]] = {
    "temperature": temperature_problems,
    "pressure": pressure_problems,
    "current": current_problems,
    "voltage": voltage_problems,
}


def setpoint_problems(plan: Callable, kwargs: dict, cell, lab) -> list[Problem]:
    """Return every setpoint among a plan's SI arguments (by its annotations) that the lab or the cell forbids."""
    problems = []
    for name, quantity in lab_limits(plan).items():
        rule, value = LIMITS[quantity], kwargs.get(name)
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for item, number in items:
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                field = (name,) if item is None else (name, item)
                problems += [(field, message) for message in rule(number, cell, lab)]
    return problems


def lab_default_problems(lab, cell) -> list[Problem]:
    """Return what the lab file's defaults would do to this cell: a ``safe_setpoint`` melting its lithium.

    The field is located in the lab file (``("instruments", "chamber", "safe_setpoint")``). The rig's
    ``on_finish`` (hold or release) sets no new value: holding keeps a pressure the steps were
    checked for, releasing goes to none.
    """
    safe = lab.instruments.chamber.safe_setpoint
    if not LithiumWouldMelt.refuses(safe, cell.contains_lithium):
        return []
    return [(("instruments", "chamber", "safe_setpoint"),
             f"{show(safe, 'degC')} would melt the lithium of cell {cell.id!r} (Li melts at 180.5 degC) when the lab is "
             f"made safe after the experiment: choose a safe_setpoint below 180.5 degC")]


def guard_problems(guards, steps: list[tuple[str, dict]], cell) -> list[Problem]:
    """Return guard bands that let a lithium cell melt before the guard acts.

    A temperature guard acts only once the chamber is ``band`` away from its setpoint, so during a
    guarded step the chamber may reach setpoint + band: that must stay below lithium's melting
    point. The setpoint of a guarded step is the last one an earlier step set. ``steps`` are
    ``(plan name, SI kwargs)`` in order; the field is located in the experiment's ``guards``.
    """
    guard = getattr(guards, "temperature", None) if guards is not None else None
    if guard is None or not cell.contains_lithium:
        return []
    setpoint, problems = None, []
    for index, (plan, kwargs) in enumerate(steps):
        if plan in GUARDED_PLANS and setpoint is not None and setpoint + guard.band >= LITHIUM_MELTING_POINT:
            room = LITHIUM_MELTING_POINT - setpoint
            problems.append((("guards", "temperature", "band"),
                             f"{guard.band:g} K around the {show(setpoint, 'degC')} of step {index} lets the chamber "
                             f"reach {show(setpoint + guard.band, 'degC')} before the guard acts, melting the cell's "
                             f"lithium (180.5 degC): narrow the band below {room:.3g} K"))
        setpoint = _last_setpoint(plan, kwargs, setpoint)
    return problems


GUARDED_PLANS = ("plate",)  # plans that take the experiment's guards (RUNNER_FILLED "guards")


def _last_setpoint(plan: str, kwargs: dict, previous: float | None) -> float | None:
    if plan == "condition_cell":
        return kwargs.get("test_temperature", previous)
    if isinstance(kwargs.get("temperatures"), list) and kwargs["temperatures"]:
        return kwargs["temperatures"][-1]
    return kwargs.get("temperature", previous)


# =================================================================================================
# The instrument a plan runs on: sweep frequencies, amplitudes, current peaks
# =================================================================================================

# Impedance sweeps: (f_min, f_max, points per decade, amplitude in V or None) argument names.
SWEEPS = {
    "peis": ("f_min", "f_max", "points_per_decade", "amplitude"),
    "ionic_conductivity_arrhenius": ("f_min", "f_max", "points_per_decade", "amplitude"),
    "plate": ("geis_f_min", "geis_f_max", "geis_points_per_decade", None),
    "plate_strip": ("geis_f_min", "geis_f_max", "geis_points_per_decade", None),
}
# Galvanostatic sweeps on a current: (amplitude, current density) argument names, both A/m^2.
GEIS_ON_CURRENT = {"plate": ("geis_amplitude", "current_density"), "plate_strip": ("geis_amplitude", "current_density")}


ANALYSER_PLANS = ("peis", "ionic_conductivity_arrhenius")  # plans that take the impedance_analyser role


def sweep_instrument(plan: str, lab) -> tuple[str, tuple[float, float], float | None]:
    """Return the instrument a plan's sweep runs on: its name, frequency range (Hz) and amplitude cap (V or None).

    ``peis`` and ``ionic_conductivity_arrhenius`` run on the lab's impedance analyser when it has
    one (labctl.runner passes it by role), every other sweep on the potentiostat channel. The
    ranges are the drivers' own constants.
    """
    from devices.biologic.ecc import EIS_FREQUENCY_RANGE  # lazily: the rules import without the drivers
    from devices.biologic.mtz35 import FREQUENCY_RANGE

    analyser = getattr(lab.instruments, "impedance_analyser", None) if lab is not None else None
    if plan in ANALYSER_PLANS and analyser is not None:
        return "the MTZ-35 (impedance_analyser)", FREQUENCY_RANGE, analyser.max_amplitude
    return "the SP-200 (potentiostat)", EIS_FREQUENCY_RANGE, None


def sweep_problems(plan: str, kwargs: dict, lab) -> list[Problem]:
    """Return why a plan's impedance sweep cannot run: order, the instrument's range, its points, its amplitude."""
    if plan not in SWEEPS:
        return []
    f_min_name, f_max_name, ppd_name, amplitude_name = SWEEPS[plan]
    f_min, f_max, ppd = kwargs.get(f_min_name), kwargs.get(f_max_name), kwargs.get(ppd_name)
    known = lab is not None or plan not in ANALYSER_PLANS  # without a lab, these may still have an MTZ-35
    if f_max is None and known:  # "the instrument's top", as the plan reads it
        f_max = sweep_instrument(plan, lab)[1][1]
    if not all(isinstance(v, (int, float)) for v in (f_min, f_max, ppd)):
        return []
    problems = []
    if known:
        name, (low, high), cap = sweep_instrument(plan, lab)
        for field, value in ((f_min_name, f_min), (f_max_name, f_max)):
            if not low * (1 - 1e-9) <= value <= high * (1 + 1e-9):  # "10 uHz" is 1.0000000000000001e-05 Hz
                problems.append(((field,), f"{_hz(value)} is outside the range of {name}: allowed {_hz(low)} to "
                                           f"{_hz(high)}" + (" (an MTZ-35 in the lab file sweeps up to 35 MHz)"
                                                            if plan in ANALYSER_PLANS and high < 35e6 else "")))
        amplitude = kwargs.get(amplitude_name) if amplitude_name else None
        if cap is not None and isinstance(amplitude, (int, float)) and amplitude > cap:
            problems.append(((amplitude_name,), f"{show(amplitude, 'mV')} is above the lab's cap on {name} "
                                                f"(max_amplitude {show(cap, 'mV')}): lower it"))
    if f_min >= f_max:
        problems.append(((f_min_name,), f"{_hz(f_min)} is not below {f_max_name} {_hz(f_max)}: a sweep runs from "
                                        f"{f_max_name} down to a lower {f_min_name}"))
    else:
        points = int(round(math.log10(f_max / f_min) * ppd)) + 1  # as techniques.sweep_frequencies counts them
        if not MIN_SWEEP_POINTS <= points <= MAX_SWEEP_POINTS:
            problems.append(((ppd_name,), f"{ppd} per decade from {_hz(f_max)} to {_hz(f_min)} is {points} "
                                          f"frequencies: allowed {MIN_SWEEP_POINTS} to {MAX_SWEEP_POINTS} per sweep "
                                          f"(at least {MIN_SWEEP_POINTS} for the equivalent-circuit fit)"))
    return problems


def _hz(value: float) -> str:
    for unit, scale in (("MHz", 1e6), ("kHz", 1e3), ("Hz", 1.0), ("mHz", 1e-3), ("uHz", 1e-6)):
        if value >= scale or unit == "uHz":
            return f"{value / scale:.4g} {unit}"
    return f"{value:g} Hz"


def geis_problems(plan: str, kwargs: dict, cell, lab) -> list[Problem]:
    """Return why a GEIS on a current is refused: an amplitude above the current, or a peak above the limit.

    The amplitude may not exceed the plating (or cycling) current density, so the sine never drives
    the cell the other way during plating (``plate`` sweeps on the plating current) and never
    probes harder than the cycling current (``plate_strip`` sweeps at open circuit). With a lab, the
    peak, current plus amplitude on the electrode, must be within the potentiostat's current limit.
    """
    if plan not in GEIS_ON_CURRENT:
        return []
    amplitude_name, current_name = GEIS_ON_CURRENT[plan]
    amplitude, density = kwargs.get(amplitude_name), kwargs.get(current_name)
    if not isinstance(amplitude, (int, float)) or not isinstance(density, (int, float)):
        return []
    if amplitude > density:
        return [((amplitude_name,), f"{show(amplitude, 'mA/cm^2')} is above the {current_name} of "
                                    f"{show(density, 'mA/cm^2')}: allowed at most the current density, so the sine "
                                    f"never drives the cell the other way")]
    if plan == "plate" and lab is not None and cell is not None:
        peak = (density + amplitude) * cell.electrode_area_m2
        limit = lab.instruments.potentiostat.current_limit
        if peak > limit >= density * cell.electrode_area_m2:  # the current alone past it: current_problems says so
            return [((amplitude_name,), f"{show(density, 'mA/cm^2')} plus {show(amplitude, 'mA/cm^2')} on "
                                        f"{show(cell.electrode_area_m2, 'cm^2')} peaks at {show(peak, 'mA')}, above "
                                        f"the potentiostat's current limit of {show(limit, 'mA')} "
                                        f"(lab {lab.name!r}): lower the amplitude or the current density")]
    return []


def order_problems(plan: str, kwargs: dict) -> list[Problem]:
    """Return arguments out of order: a staircase must ascend."""
    if plan == "ccd_staircase":
        start, stop = kwargs.get("start_density"), kwargs.get("max_density")
        if isinstance(start, (int, float)) and isinstance(stop, (int, float)) and stop < start:
            return [(("max_density",), f"{show(stop, 'mA/cm^2')} is below start_density {show(start, 'mA/cm^2')}: "
                                       f"a staircase ascends, so allowed max_density >= start_density")]
    return []


# =================================================================================================
# Sizes: rows, wake-ups, spectra and time one step run would take
# =================================================================================================


def _per(span: float, kwargs: dict, name: str, budget: int, what: str) -> list[Problem]:
    interval = kwargs.get(name)
    if not isinstance(interval, (int, float)) or interval <= 0 or span <= 0:
        return []
    count = span / interval
    if count <= budget:
        return []
    return [((name,), f"{show(interval, 's')} over {show(span, 'h')} is {count:.3g} {what}: allowed at most "
                      f"{budget:,} per step run (labctl's budget for memory and run time), so at least "
                      f"{show(span / budget, 's')}")]


def _recorded(span: float, kw: dict) -> list[Problem]:
    """A set's record_interval: within the budget of wake-ups, and no longer than the longest wait itself.

    One sleep of a longer interval would carry the clock far past the settle (on the simulated
    lab, years of physics integrated at once) before the set's status is looked at again.
    """
    problems = _per(span, kw, "record_interval", MAX_WAKEUPS, "wake-ups")
    interval = _number(kw, "record_interval")
    if interval > span > 0:
        problems.append((("record_interval",), f"{show(interval, 's')} is longer than the longest this step waits "
                                               f"and records ({show(span, 'h')}): allowed at most {show(span, 's')}"))
    return problems


def _time(span: float, name: str) -> list[Problem]:
    if span <= MAX_STEP_TIME:
        return []
    return [((name,), f"the step would take {show(span, 'h')}: allowed at most {show(MAX_STEP_TIME, 'h')} "
                      f"(365 d) per step run")]


def _timed(span: float, span_name: str, kwargs: dict, *, rows="sample_interval", wakeups=()) -> list[Problem]:
    problems = _time(span, span_name)
    if rows:
        problems += _per(span, kwargs, rows, MAX_ROWS, "samples")
    for name in wakeups:
        problems += _per(span, kwargs, name, MAX_WAKEUPS, "wake-ups")
    return problems


def _number(kwargs: dict, name: str, default: float = 0.0) -> float:
    value = kwargs.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _plate_size(kw: dict, lab) -> list[Problem]:
    span = _number(kw, "max_duration")
    if kw.get("max_capacity") and _number(kw, "current_density"):
        span = min(span, kw["max_capacity"] / kw["current_density"])
    return (_timed(span, "max_duration", kw, wakeups=("check_interval", "page_interval"))
            + _per(span, kw, "geis_interval", MAX_SPECTRA, "spectra"))


def _plate_strip_size(kw: dict, lab) -> list[Problem]:
    span = 2 * _number(kw, "cycles", 1) * _number(kw, "half_cycle")
    return _timed(span, "half_cycle", kw, wakeups=("check_interval", "page_interval"))


def _staircase_size(kw: dict, lab) -> list[Problem]:
    if (kw.get("step_capacity") is None) == (kw.get("step_duration") is None):  # the step's length is unknown
        return [(("step_duration" if kw.get("step_duration") is not None else "step_capacity",),
                 "give exactly one of step_capacity (a fixed capacity per step) and step_duration (a fixed time)")]
    start, step, stop = (_number(kw, n) for n in ("start_density", "density_step", "max_density"))
    if not (start > 0 and step > 0 and stop >= start):
        return []  # refused by the bounds or order_problems
    stairs = int((stop - start) / step * (1 + 1e-9)) + 1
    if stairs > MAX_STAIRS:
        return [(("density_step",), f"{show(step, 'mA/cm^2')} from {show(start, 'mA/cm^2')} to "
                                    f"{show(stop, 'mA/cm^2')} is {stairs:,} stairs: allowed at most {MAX_STAIRS:,}")]
    halves = 2 * _number(kw, "cycles_per_step", 1)  # each step plates and strips, cycles_per_step times
    if kw.get("step_duration"):  # the fixed-time protocol, else a fixed capacity per half-cycle
        return _timed(halves * stairs * _number(kw, "step_duration"), "step_duration", kw,
                      wakeups=("check_interval", "page_interval"))
    span = halves * sum(_number(kw, "step_capacity") / (start + k * step) for k in range(stairs))
    return _timed(span, "step_capacity", kw, wakeups=("check_interval", "page_interval"))


def _settling(span: float, span_name: str, kw: dict) -> list[Problem]:
    return _time(span, span_name) + _recorded(span, kw)


def _pressure_program_size(kw: dict, lab) -> list[Problem]:
    problems = _settling(_number(kw, "hold") + RIG_SETTLE, "hold", kw)
    rate, interval, target = _number(kw, "ramp_rate"), _number(kw, "record_interval"), _number(kw, "pressure")
    if rate > 0 and interval > 0:
        low, high = lab.instruments.rig.pressure_range if lab is not None else (0.0, target)
        steps = max(target - low, high - target) / (rate * interval)  # from the farthest end of the rig's range
        if steps > MAX_WAKEUPS:
            problems.append((("ramp_rate",), f"{show(rate, 'MPa/min')} in steps of {show(interval, 's')} is up to "
                                             f"{steps:.3g} setpoints: allowed at most {MAX_WAKEUPS:,} per ramp"))
    return problems


def _peis_size(kw: dict, lab) -> list[Problem]:
    return _time(_number(kw, "repeats", 1) * _number(kw, "interval"), "interval")


# Per plan, the sizes of one step run, in SI arguments; a plan missing here has no loop to bound.
SIZES: dict[str, Callable[[dict, Any], list[Problem]]] = {
    "rest": lambda kw, lab: _timed(_number(kw, "duration"), "duration", kw, wakeups=("page_interval",)),
    "plate": _plate_size,
    "plate_strip": _plate_strip_size,
    "ccd_staircase": _staircase_size,
    "peis": _peis_size,
    "electronic_conductivity_step": lambda kw, lab: _timed(_number(kw, "max_duration"), "max_duration", kw,
                                                           wakeups=("check_interval", "page_interval")),
    # Recording goes on while the chamber or the rig settles, not only while it soaks or holds.
    "set_temperature": lambda kw, lab: _settling(_number(kw, "soak") + CHAMBER_SETTLE, "soak", kw),
    "condition_cell": lambda kw, lab: _settling(_number(kw, "hold") + 2 * CHAMBER_SETTLE, "hold", kw),
    "set_pressure": lambda kw, lab: _settling(RIG_SETTLE, "pressure", kw),
    "ionic_conductivity_arrhenius": lambda kw, lab: _settling(len(kw.get("temperatures") or []) * CHAMBER_SETTLE,
                                                              "temperatures", kw),
    "pressure_program": _pressure_program_size,
}


# =================================================================================================
# One plan call
# =================================================================================================


def plan_problems(plan: str, kwargs: dict, lab=None, cell=None, registry: dict | None = None) -> list[Problem]:
    """Return every rule a plan call breaks: sweep, GEIS, order and sizes always; setpoints with a lab and a cell.

    ``plan`` is the plan's name in ``registry`` (default ``plans.PLANS``), ``kwargs`` its SI keyword
    arguments (defaults included, as the step models give them), ``lab`` a ``LabConfig`` and ``cell`` a ``Cell``.
    """
    problems = sweep_problems(plan, kwargs, lab) + geis_problems(plan, kwargs, cell, lab) + order_problems(plan, kwargs)
    if plan in SIZES:
        problems += SIZES[plan](kwargs, lab)
    if lab is not None and cell is not None:
        if registry is None:
            from plans import PLANS as registry  # lazily: labctl.safety must import without the plans
        problems += setpoint_problems(registry[plan], kwargs, cell, lab)
    return problems


class UnsafePlanCall(LabctlError, ValueError):
    """A plan call the rule set refuses; the message names each argument, what was asked and what is allowed."""

    def __init__(self, plan: str, problems: list[Problem]):
        self.plan, self.problems = plan, problems
        super().__init__("; ".join(f"{plan}: {_dotted(field)}: {message}" for field, message in problems))


def call_problems(plan: str, kwargs: dict, lab, cell, registry: dict | None = None) -> list[Problem]:
    """Return every rule one plan call breaks, as the shell or a queue would make it (SI keyword arguments).

    The plan's defaults are filled in from its signature, and each argument is checked against the
    bounds its annotation declares (``Unit``, ``Count``) before :func:`plan_problems` runs, since a
    call by hand has not been through the YAML step model.
    """
    if registry is None:
        from plans import PLANS as registry  # lazily: labctl.safety must import without the plans
    if plan not in registry:
        return [(("plan",), f"unknown plan {plan!r}: known plans are {', '.join(sorted(registry))}")]
    func = registry[plan]
    parameters = inspect.signature(func).parameters.values()
    full = {p.name: p.default for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}
    full.update(kwargs)
    problems = _bound_problems(func, full)
    return problems or plan_problems(plan, full, lab, cell, registry)


def _bound_problems(func: Callable, kwargs: dict) -> list[Problem]:
    problems = []
    for name, hint in typing.get_type_hints(func, include_extras=True).items():
        value = kwargs.get(name)
        marker = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, (Unit, Count))), None)
        if value is None:
            continue
        for length in (m for m in getattr(hint, "__metadata__", ()) if hasattr(m, "min_length")):  # Len(1, 50)
            if isinstance(value, list) and not length.min_length <= len(value) <= (length.max_length or len(value)):
                problems.append(((name,), f"{len(value)} items: allowed {length.min_length} to {length.max_length}"))
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if marker is None and typing.get_origin(base) is list and isinstance(value, list):  # list of quantities
            item = typing.get_args(base)[0]
            marker = next((m for m in getattr(item, "__metadata__", ()) if isinstance(m, Unit)), None)
            if marker is not None:
                problems += [((name, i), m) for i, v in enumerate(value) if (m := marker.si_problem(v))]
            continue
        if isinstance(marker, Unit) and (message := marker.si_problem(value)):
            problems.append(((name,), message))
        elif isinstance(marker, Count):
            try:
                marker.to_int(value)
            except ValueError as err:
                problems.append(((name,), str(err)))
    return problems


def refuse_unsafe_call(plan: str, kwargs: dict, lab, cell, registry: dict | None = None) -> None:
    """Raise :class:`UnsafePlanCall` if one plan call breaks any rule (for the shell and a queue).

    Example: ``refuse_unsafe_call("set_temperature", {"temperature": 463.15}, lab_config, experiment.cell)``
    raises, for a cell with lithium in it, before ``RE(plans.set_temperature(...))`` is called.
    """
    problems = call_problems(plan, kwargs, lab, cell, registry)
    if problems:
        raise UnsafePlanCall(plan, problems)


def _dotted(field: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(field))
