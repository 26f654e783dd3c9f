"""Transport measurements: ionic conductivity against temperature (Arrhenius), electronic conductivity."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from annotated_types import Len
from bluesky.utils import MsgGenerator

from devices.biologic.analyser import ImpedanceAnalyser
from devices.biologic.channel import PotentiostatChannel
from devices.biologic.techniques import CA, PEIS
from devices.chamber.device import TemperatureChamber
from devices.rig.device import StackPressureRig
from labctl.core.units import Count, LabLimit, Unit
from plans.impedance import impedance_device
from plans.potentiostat import POTENTIOSTAT, latest, timed_step
from plans.run import Outcome, run_plan
from plans.spectra import FitRecorder, circuit_for, impedance_meter, lead_resistance_of, measure_spectrum
from plans.stubs import ComputedValues, open_circuit, wait_recording

ARRHENIUS = "arrhenius"
#: Units of the figures the transport plans put in their ``result`` stream (SI).
RESULT_UNITS = {"activation_energy": "eV", "activation_energy_err": "eV",
                "sigma_25c": "S/m", "sigma_25c_err": "S/m", "voltage": "V", "steady_current": "A",
                "sigma_electronic": "S/m"}
CONDUCTIVITY = "conductivity"
CELSIUS_25 = 298.15  # K
POTENTIOSTAT_F_MAX, ANALYSER_F_MAX = 7e6, 35e6  # Hz: the SP-200's impedance meter, the MTZ-35


def _some_temperature(*, temperatures: list[float], **_) -> None:
    if not temperatures:
        raise ValueError("give at least one temperature")


@run_plan(check=_some_temperature, metadata=impedance_device)
def ionic_conductivity_arrhenius(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber,
    rig: StackPressureRig | None = None,
    impedance_analyser: ImpedanceAnalyser | None = None,
    *,
    temperatures: Annotated[list[Annotated[float, Unit("degC", ge=-40, le=200), LabLimit("temperature")]], Len(1, 50)],
    amplitude: Annotated[float, Unit("mV", gt=0, le=1000)] = 0.01,
    f_max: Annotated[float, Unit("Hz", gt=0, le=35e6)] | None = None,
    f_min: Annotated[float, Unit("Hz", gt=0)] = 10.0,
    points_per_decade: Annotated[int, Count(ge=1, le=100)] = 10,
    record_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    thickness: Annotated[float, Unit("mm", gt=0)],
    cell_kind: str = "symmetric",
    lead_resistances: dict | None = None,
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Measure the bulk ionic conductivity at each temperature and fit an Arrhenius law through them.

    At each temperature the chamber is set and waited on until stable (its lab-file band and hold),
    a PEIS spectrum is measured at open circuit, on the lab's impedance analyser (MTZ-35, up to 35 MHz,
    as the study did) when it has one, else on the potentiostat (up to 7 MHz), and fitted: the cell
    kind's circuit, and for a symmetric cell whose bulk that leaves undetermined (cold: its interface
    arc is a spur within the sweep) the blocking-cell circuit too. The bulk resistance gives
    sigma = L / (R_bulk A). Each point is one event of the ``conductivity`` stream; a point whose fit
    failed or whose bulk resistance is not determined is recorded with the reason (``excluded``) and
    kept out of the Arrhenius fit (sigma = sigma_0 exp(-E_a / kT)), which with three or more points
    is one event of the ``arrhenius`` stream: E_a and sigma(25 degC) with uncertainties, the points
    used and those left out with why. The stop reason quotes the same.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on; with an analyser it is only held at open circuit.
    chamber : TemperatureChamber
        The chamber, read into the environment stream while it settles.
    rig : optional
        Recorded alongside.
    impedance_analyser : ImpedanceAnalyser, optional
        The lab's impedance analyser; when given, the spectra are measured on it.
    temperatures : list of float
        Measurement temperatures, K, in the order given (YAML: e.g. ``[20 degC, 30 degC]``).
    amplitude : float
        PEIS amplitude, V.
    f_max, f_min : float
        Sweep limits, Hz; f_max defaults to the instrument's top (35 MHz on the MTZ-35, 7 MHz on
        the SP-200) and must lie above the bulk arc's apex at the highest temperature, unless the lab
        file's lead resistance bounds R0.
    points_per_decade : int
        Frequencies per decade.
    record_interval : float
        How often the environment is recorded while the chamber settles, s.
    electrode_area, thickness : float
        Electrode area (m^2) and pellet thickness (m); filled in from the cell metadata.
    cell_kind : str
        The cell's kind, which picks the circuit; filled in from the cell metadata.
    lead_resistances : dict, optional
        Lead resistance (ohm) by instrument role, from the lab file; bounds the fits' R0.
    md : dict, optional
        Extra metadata for the start document.
    """
    from labctl.core.analysis import BLOCKING, ionic_conductivity  # lazily: `labctl check` reads the plans without scipy

    environment = [d for d in (chamber, rig) if d is not None]
    top = ANALYSER_F_MAX if impedance_analyser is not None else POTENTIOSTAT_F_MAX
    technique = PEIS(amplitude=amplitude, f_max=f_max or top, f_min=f_min, points_per_decade=points_per_decade)
    meter = impedance_meter(potentiostat if impedance_analyser is None else impedance_analyser)
    circuit = circuit_for(cell_kind)
    recorder = FitRecorder(meter, electrode_area, circuit,
                           lead_resistance=lead_resistance_of(lead_resistances, impedance_analyser),
                           alternative=BLOCKING if circuit is not BLOCKING else None)
    points = ComputedValues(CONDUCTIVITY, source="labctl.core.analysis.ionic_conductivity")
    result = ComputedValues(ARRHENIUS, source="labctl.core.analysis.arrhenius_fit")
    if impedance_analyser is not None:
        yield from open_circuit(potentiostat)  # one instrument drives the cell at a time
    used, excluded = [], []
    for setpoint in temperatures:
        status = yield from bps.abs_set(chamber, setpoint, group="chamber")
        yield from wait_recording(status, environment, record_interval, "chamber")
        temperature = yield from bps.rd(chamber.temperature)
        fit = yield from recorder.record((yield from measure_spectrum(meter, technique, chamber, rig)))
        why = fit.why("bulk")
        r_bulk, r_err = fit.value("bulk"), fit.error("bulk") if why is None else float("nan")
        sigma = float(ionic_conductivity(r_bulk, thickness, electrode_area))
        if why is None:
            used.append((temperature, sigma))
        else:
            excluded.append(f"{temperature - 273.15:.1f} degC: {why}")
        points.update({"temperature": temperature, "sigma": sigma, "sigma_err": sigma * r_err / r_bulk,
                       "r_bulk": r_bulk, "r_bulk_err": r_err, "included": float(why is None),
                       "excluded": why or ""}, potentiostat.clock.now())
        yield from _save(points)
    reason = yield from _arrhenius(used, excluded, result)
    ended_by = "arrhenius_fit" if result.values else "too_few_temperatures"
    return Outcome(ended_by, reason, potentiostat.clock.now(), result.values, RESULT_UNITS)


def _save(values: ComputedValues) -> MsgGenerator[None]:
    yield from bps.create(name=values.name)
    yield from bps.read(values)
    yield from bps.save()


def _arrhenius(used: list, excluded: list, result: ComputedValues) -> MsgGenerator[str]:
    """Fit and store the Arrhenius law through the ``used`` (T, sigma) points if there are enough;
    return the run's stop reason, which lists the ``excluded`` points with their reasons."""
    from labctl.core.analysis import arrhenius_fit  # lazily: `labctl check` reads the plans without scipy

    left_out = f"; left out: {'; '.join(excluded)}" if excluded else ""
    if not used:
        return f"no temperature gave a determined bulk resistance{left_out}"
    temperatures, sigmas = (list(v) for v in zip(*used))
    span = f"{len(sigmas)} temperatures, sigma {min(sigmas) * 10:.3g} to {max(sigmas) * 10:.3g} mS/cm"
    if len(sigmas) < 3:
        return f"{span}; no Arrhenius fit (needs three temperatures){left_out}"
    fit = arrhenius_fit(temperatures, sigmas)
    sigma_25, sigma_25_err = float(fit.conductivity(CELSIUS_25)), float(fit.conductivity_err(CELSIUS_25))
    result.update({"activation_energy": fit.activation_energy, "activation_energy_err": fit.activation_energy_err,
                   "prefactor": fit.prefactor, "sigma_25c": sigma_25, "sigma_25c_err": sigma_25_err,
                   "points_used": float(len(sigmas)), "points_excluded": float(len(excluded)),
                   "excluded": "; ".join(excluded)},
                  max(temperatures))
    yield from _save(result)
    return (f"{span}; E_a = {fit.activation_energy:.3f} +/- {fit.activation_energy_err:.3f} eV, "
            f"sigma(25 degC) = {sigma_25 * 10:.4g} +/- {sigma_25_err * 10:.2g} mS/cm{left_out}")


def _blocking_cell(*, cell_kind: str, **_) -> None:
    if cell_kind != "blocking":
        raise ValueError(f"electronic conductivity needs a blocking (e.g. Ni) cell, this one is {cell_kind}: "
                         "lithium electrodes would carry an ionic current")


@run_plan(check=_blocking_cell)
def electronic_conductivity_step(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber | None = None,
    rig: StackPressureRig | None = None,
    *,
    voltage: Annotated[float, Unit("V", gt=0, le=5), LabLimit("voltage")] = 1.0,
    max_duration: Annotated[float, Unit("h", gt=0)] = 36000.0,
    sample_interval: Annotated[float, Unit("s", ge=0.001)] = 10.0,
    steady_window: Annotated[float, Unit("min", gt=0)] = 1800.0,
    steady_tolerance: Annotated[float, Unit("%", gt=0, lt=100)] = 0.01,
    check_interval: Annotated[float, Unit("min", gt=0)] = 600.0,
    page_interval: Annotated[float, Unit("min", gt=0)] = 1800.0,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    thickness: Annotated[float, Unit("mm", gt=0)],
    cell_kind: str = "blocking",
    md: dict | None = None,
) -> MsgGenerator[Outcome]:
    """Apply a DC voltage step to a blocking cell and follow the current to its steady state.

    The ionic current decays as the blocking electrodes charge; what remains is carried by
    electrons, sigma_e = I L / (V A). The step ends when the current changed by less than
    ``steady_tolerance`` over the last ``steady_window``, or at ``max_duration``; the steady current
    is the mean of the last fifth of the step (:func:`labctl.core.analysis.steady_current`), and the
    result is one event of the ``conductivity`` stream and quoted in the stop reason.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on.
    chamber, rig : optional
        Read into the environment stream with every page.
    voltage : float
        The DC step, V.
    max_duration : float
        Longest the step may take, s.
    sample_interval : float
        Time between current samples, s.
    steady_window, steady_tolerance : float
        Steady means the current changed by less than ``steady_tolerance`` (fraction; YAML ``1 %``)
        over ``steady_window`` (s).
    check_interval : float
        How often the current is read for the steady-state rule and the result, s.
    page_interval : float
        How often rows are handed to storage, s.
    electrode_area, thickness : float
        Electrode area (m^2) and pellet thickness (m); filled in from the cell metadata.
    cell_kind : str
        The cell's kind; only blocking cells are measured (filled in from the cell metadata).
    md : dict, optional
        Extra metadata for the start document.
    """
    from labctl.core.analysis import electronic_conductivity, steady_current  # lazily: `labctl check` reads the plans without scipy

    environment = [d for d in (chamber, rig) if d is not None]
    result = ComputedValues(CONDUCTIVITY, source="labctl.core.analysis.electronic_conductivity")
    times, currents = [], []

    def steady() -> MsgGenerator[str | None]:
        reading = yield from latest(potentiostat.current)
        times.append(reading["timestamp"])
        currents.append(reading["value"])
        back = [i for t, i in zip(times, currents) if t <= times[-1] - steady_window]
        if back and abs(currents[-1] - back[-1]) <= steady_tolerance * abs(currents[-1]):
            return "steady"
        return None

    yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
    end, stop, ran = yield from timed_step(
        potentiostat, lambda seconds: CA(voltage, seconds, sample_interval), max_duration, environment,
        sample_interval=sample_interval, page_interval=page_interval, check=steady, check_interval=check_interval,
    )
    current = steady_current(times, currents)
    sigma = electronic_conductivity(voltage, current, thickness, electrode_area)
    result.update({"voltage": voltage, "steady_current": current, "sigma_electronic": sigma}, times[-1])
    yield from _save(result)
    how = "steady" if stop else f"not steady ({end})"
    reason = f"{how} after {ran / 3600:.2f} h: I = {current * 1e9:.4g} nA, sigma_e = {sigma / 100:.3g} S/cm"
    return Outcome("steady" if stop else "not_steady", reason, times[-1], result.values, RESULT_UNITS)
