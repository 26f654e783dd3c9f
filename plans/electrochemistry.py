"""Electrochemistry plans: rest at open circuit, and galvanostatic plating with operando GEIS."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
import numpy as np
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from devices.biologic.techniques import CP, GEIS, OCV, sweep_duration
from labctl.analysis import ShortDetector, fit_spectrum
from labctl.units import Count, Unit
from plans.guards import Guards
from plans.stubs import (ENVIRONMENT, FIT_HINTS, ComputedValues, NotAtOpenCircuit, fit_unit, open_circuit,
                         plan_metadata, record_result, wait_for)

POTENTIOSTAT = "potentiostat"
PRIMARY = "primary"  # the latest voltage and current at every check (see _sample)
IMPEDANCE = "impedance"
IMPEDANCE_FIT = "impedance_fit"


def run_technique(potentiostat, technique, environment, *, page_interval: float, check=None,
                  check_interval: float | None = None):
    """Run a timed technique on the channel, collecting a page and the environment every ``page_interval``.

    ``check()`` is a plan returning a reason to stop early (or None); it runs every
    ``check_interval`` (default: every page), reading the channel's latest sample, so a short is
    caught quickly without cutting the stored data into small pages.
    Returns ``(end_reason, stop_reason)``: why the instrument ended the technique, and why the
    plan stopped it early, if it did.
    """
    interval = min(check_interval or page_interval, page_interval)
    yield from bps.prepare(potentiostat, technique, wait=True)
    yield from bps.kickoff(potentiostat, wait=True)
    status = yield from bps.complete(potentiostat, wait=False, group="technique")
    elapsed, since_page, stop_reason = 0.0, 0.0, None
    while not status.done:
        step = min(interval, technique.duration - elapsed) if technique.duration > elapsed else interval
        # A bare Msg, not bps.sleep: every plan-stub call captures the stack (bluesky's
        # never-iterated warning), which was a fifth of a simulated day's wall time.
        yield Msg("sleep", None, step)
        elapsed, since_page = elapsed + step, since_page + step
        yield from _sample(potentiostat)
        if since_page >= page_interval and not status.done:
            yield from _page(potentiostat, environment)
            since_page = 0.0
        if check is not None and not stop_reason:
            stop_reason = yield from check()
            if stop_reason:
                yield from open_circuit(potentiostat)
    yield from bps.wait(group="technique")
    yield from _page(potentiostat, environment)
    return (yield from bps.rd(potentiostat.end_reason)), stop_reason


def _sample(potentiostat):
    """Read the latest voltage and current into the ``primary`` stream, for live callbacks.

    The full-rate rows go to the ``potentiostat`` stream as pages (StreamDatum), which callbacks
    such as BestEffortCallback and LiveTable cannot show; one event per check keeps them informed
    (``potentiostat_ewe`` is hinted). Bare Msgs, for speed as in run_technique.
    """
    yield Msg("create", None, name=PRIMARY)
    yield Msg("read", potentiostat.ewe)
    yield Msg("read", potentiostat.current)
    yield Msg("save")


def _page(potentiostat, environment):
    """Hand the rows measured so far to storage and read the environment beside them."""
    yield from bps.collect(potentiostat, name=POTENTIOSTAT)
    if environment:
        yield from bps.trigger_and_read(environment, name=ENVIRONMENT)


def measure_impedance(potentiostat, technique):
    """Run one impedance sweep, store it as one event of the impedance stream and return the reading."""
    yield from bps.prepare(potentiostat.eis, technique, wait=True)
    status = yield from bps.trigger(potentiostat.eis, group="eis")
    yield from wait_for(status, "eis", expected=sweep_duration(technique))
    yield from bps.create(name=IMPEDANCE)
    reading = yield from bps.read(potentiostat.eis)
    yield from bps.save()
    return reading


class SpectrumFitter:
    """Fits each spectrum of a run as it arrives (warm-started) and records it in ``impedance_fit``.

    The fitted values go into the same run as their own stream, one event per spectrum, so they
    are stored and searchable beside the spectra; the short-circuit detector sees each fit.
    """

    def __init__(self, potentiostat, electrode_area: float, detector: ShortDetector):
        self.prefix = potentiostat.eis.name
        self.area = electrode_area
        self.detector = detector
        self.values = ComputedValues(IMPEDANCE_FIT, source="labctl.analysis.fit_spectrum", units=fit_unit,
                                     hinted=FIT_HINTS)
        self.previous = None
        self.last_ewe_dc = None  # DC voltage during the last sweep, V

    def record(self, reading):
        """Fit ``reading`` (an impedance meter reading), store the fit; return a short reason or None."""
        field = lambda name: reading[f"{self.prefix}_{name}"]["value"]  # noqa: E731
        frequencies = np.asarray(field("frequency"))
        z = np.asarray(field("z_real")) + 1j * np.asarray(field("z_imag"))
        self.previous = fit = fit_spectrum(frequencies, z, previous=self.previous)
        r_low = float(z.real[np.argmin(frequencies)])
        time = field("sweep_start")
        self.values.update({**fit.summary(area=self.area), "r_low_frequency": r_low}, time)
        yield from bps.create(name=IMPEDANCE_FIT)
        yield from bps.read(self.values)
        yield from bps.save()
        self.last_ewe_dc = field("ewe_dc")
        return self.detector.add_spectrum(time, r_low)


def rest(
    potentiostat,
    chamber=None,
    rig=None,
    *,
    duration: Annotated[float, Unit("min", gt=0)],
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 10.0,
    page_interval: Annotated[float, Unit("s", gt=0)] = 300.0,
    md: dict | None = None,
):
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
    args = {"duration": duration, "sample_interval": sample_interval, "page_interval": page_interval}
    outcome = {}

    def body():
        yield from bps.open_run(plan_metadata("rest", args, md))
        yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
        rested, end = 0.0, "completed"
        # A pause stops the technique ("stopped"); after RE.resume() the rest goes on for the time left.
        while duration - rested >= sample_interval:
            began = potentiostat.clock.now()
            end, _ = yield from run_technique(
                potentiostat, OCV(duration - rested, sample_interval), environment, page_interval=page_interval
            )
            rested += (yield from bps.rd(potentiostat.ended_at)) - began  # not the time spent paused
            if end != "stopped":
                break
        outcome["reason"] = f"rest {end} after {rested / 60:g} min"
        yield from record_result(end.replace(" ", "_"), outcome["reason"], potentiostat.clock.now())
        yield from bps.close_run(exit_status="success", reason=outcome["reason"])

    yield from _safely(potentiostat, body())
    return outcome.get("reason")


def plate(
    potentiostat,
    chamber=None,
    rig=None,
    *,
    current_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100)],
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
    md: dict | None = None,
):
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
        Read into the environment stream with every page.
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
        Short-circuit detection (:class:`labctl.analysis.ShortDetector`), at every current density:
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
        ``guards`` section. Without them a voltage limit ends the step.
    md : dict, optional
        Extra metadata for the start document.
    """
    current = -current_density * electrode_area
    args = {k: v for k, v in locals().items() if k not in ("potentiostat", "chamber", "rig", "md", "guards")}
    guards = guards or Guards()
    guards.check_interval = check_interval
    environment = [d for d in (chamber, rig) if d is not None]
    geis = GEIS(
        bias=current, amplitude=geis_amplitude * electrode_area, f_max=geis_f_max, f_min=geis_f_min,
        points_per_decade=geis_points_per_decade,
    )
    detector = ShortDetector(current, short_resistance=short_resistance, fall=short_fall, hold=short_hold,
                             drop=short_drop)
    fitter = SpectrumFitter(potentiostat, electrode_area, detector)
    at_rest = GEIS(**{**geis.__dict__, "bias": 0.0})
    outcome = {}

    def capacity():
        charge = yield from bps.rd(potentiostat.charge)
        return abs(charge) / electrode_area

    def voltage_check():
        # A bare Msg, not bps.rd, for speed as in run_technique.
        reading = (yield Msg("read", potentiostat.ewe))[potentiostat.ewe.name]
        return detector.add_voltage(reading["timestamp"], reading["value"]) or (
            (yield from guards.breach(chamber, rig)) if guards else None
        )

    def body():
        yield from bps.open_run(plan_metadata("plate", args, md))
        yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
        yield from fitter.record((yield from measure_impedance(potentiostat, at_rest)))
        detector.open_circuit_voltage = fitter.last_ewe_dc  # a tracer cell's LiMg adds a few mV
        elapsed, end, stop = 0.0, None, None
        while True:
            plated = yield from capacity()
            by_time, by_capacity = _time_left(plated, elapsed, max_capacity, max_duration, current_density)
            segment = min(geis_interval, by_time, by_capacity)
            if segment < sample_interval:  # less than one sample left: a limit is reached
                reason = _capacity_reason(plated) if by_capacity <= by_time else _time_reason(elapsed)
                break
            began = potentiostat.clock.now()
            end, stop = yield from run_technique(
                potentiostat, CP(current, segment, sample_interval), environment,
                page_interval=page_interval, check=voltage_check, check_interval=check_interval,
            )
            elapsed += potentiostat.clock.now() - began
            if guards.compliance and end == "voltage limit" and not stop:
                stop = ("compliance", (yield from bps.rd(potentiostat.ewe)), "the potentiostat reached its voltage limit")
            if isinstance(stop, tuple):  # a guard's condition left its band: pause or end, as the guards say
                stop = yield from guards.respond(potentiostat, chamber, rig, *stop)
                if not stop:
                    continue
            # A cell the voltage rule has already put at open circuit is measured at zero bias.
            short = yield from fitter.record((yield from measure_impedance(potentiostat, at_rest if stop else geis)))
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
        outcome["reason"] = reason
        ended_by = _plating_ended_by(stop, end, reason)
        yield from record_result(ended_by, reason, potentiostat.clock.now(), *_plating_figures(ended_by, plated, current_density))
        yield from bps.close_run(exit_status="fail" if ended_by == "voltage_limit" else "success", reason=reason)

    yield from _safely(potentiostat, body())
    return outcome.get("reason")


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


def _safely(potentiostat, plan):
    """Stage the channel for the run and leave the cell at open circuit whatever happens.

    If opening the circuit fails too (the potentiostat itself is lost), the error that ends the run
    names both failures, so the stop document's reason says the cell may not be at open circuit and
    why. The rows measured since the last page are collected before the channel is unstaged, so an
    abort (Ctrl-C twice, SIGTERM, ``RE.abort()``) keeps every row. The run does not rewind: a paused
    flyer cannot be replayed (the pause opened the circuit, ending its technique), so after
    ``RE.resume()`` the plan goes on from where it was.
    """
    failures = []

    def watched():
        try:
            return (yield from plan)
        except Exception as failure:
            failures.append(failure)
            raise

    def open_circuit_and_collect():
        try:
            yield from open_circuit(potentiostat)
        except Exception as error:
            if not failures:
                raise
            raise NotAtOpenCircuit(failures[0], error) from error
        finally:
            if getattr(potentiostat, "collect_pending", False):
                yield from bps.collect(potentiostat, name=POTENTIOSTAT)

    safely = bpp.finalize_wrapper(watched(), open_circuit_and_collect())
    return (yield from bpp.rewindable_wrapper(bpp.stage_wrapper(safely, [potentiostat]), False))
