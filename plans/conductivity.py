"""Transport measurements: ionic conductivity against temperature (Arrhenius), electronic conductivity."""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from annotated_types import Len
from bluesky.utils import Msg

from devices.biologic.techniques import CA, PEIS
from labctl.analysis import arrhenius_fit, electronic_conductivity, ionic_conductivity, steady_current
from labctl.units import Count, Unit
from plans.electrochemistry import POTENTIOSTAT, _safely, measure_impedance, run_technique
from plans.impedance import FitRecorder, circuit_for
from plans.stubs import ComputedValues, plan_metadata, wait_recording

ARRHENIUS = "arrhenius"
CONDUCTIVITY = "conductivity"


def ionic_conductivity_arrhenius(
    potentiostat,
    chamber,
    rig=None,
    *,
    temperatures: Annotated[list[Annotated[float, Unit("degC", ge=-40, le=200)]], Len(1, 50)],
    amplitude: Annotated[float, Unit("mV", gt=0, le=1000)] = 0.01,
    f_max: Annotated[float, Unit("Hz", gt=0, le=7e6)] = 7e6,
    f_min: Annotated[float, Unit("Hz", gt=0)] = 10.0,
    points_per_decade: Annotated[int, Count(ge=1, le=100)] = 10,
    record_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    thickness: Annotated[float, Unit("mm", gt=0)],
    md: dict | None = None,
):
    """Measure the bulk ionic conductivity at each temperature and fit an Arrhenius law through them.

    At each temperature the chamber is set and waited on until stable (its lab-file band and hold),
    a PEIS spectrum is measured at open circuit and fitted (bulk and interface arcs); the bulk
    resistance gives sigma = L / (R_bulk A). Each point is one event of the ``conductivity`` stream;
    with three or more temperatures the Arrhenius fit (sigma = sigma_0 exp(-E_a / kT)) is one event
    of the ``arrhenius`` stream and is quoted in the stop reason.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on.
    chamber : TemperatureChamber
        The chamber, read into the environment stream while it settles.
    rig : optional
        Recorded alongside.
    temperatures : list of float
        Measurement temperatures, K, in the order given (YAML: e.g. ``[20 degC, 30 degC]``).
    amplitude : float
        PEIS amplitude, V.
    f_max, f_min : float
        Sweep limits, Hz; f_max must lie above the bulk arc's apex at the highest temperature.
    points_per_decade : int
        Frequencies per decade.
    record_interval : float
        How often the environment is recorded while the chamber settles, s.
    electrode_area, thickness : float
        Electrode area (m^2) and pellet thickness (m); filled in from the cell metadata.
    md : dict, optional
        Extra metadata for the start document.
    """
    if not temperatures:
        raise ValueError("give at least one temperature")
    args = {k: v for k, v in locals().items() if k not in ("potentiostat", "chamber", "rig", "md")}
    environment = [d for d in (chamber, rig) if d is not None]
    technique = PEIS(amplitude=amplitude, f_max=f_max, f_min=f_min, points_per_decade=points_per_decade)
    recorder = FitRecorder(potentiostat, electrode_area, circuit_for("symmetric"))
    points = ComputedValues(CONDUCTIVITY, source="labctl.analysis.ionic_conductivity")
    result = ComputedValues(ARRHENIUS, source="labctl.analysis.arrhenius_fit")
    outcome = {}

    def body():
        yield from bps.open_run(plan_metadata("ionic_conductivity_arrhenius", args, md))
        measured, sigmas = [], []
        for setpoint in temperatures:
            status = yield from bps.abs_set(chamber, setpoint, group="chamber")
            yield from wait_recording(status, environment, record_interval, "chamber")
            temperature = yield from bps.rd(chamber.temperature)
            fit = yield from recorder.record((yield from measure_impedance(potentiostat, technique)))
            sigma = float(ionic_conductivity(fit.value("bulk"), thickness, electrode_area))
            measured.append(temperature)
            sigmas.append(sigma)
            reading = {"temperature": temperature, "sigma": sigma, "r_bulk": fit.value("bulk")}
            points.update(reading, potentiostat.clock.now())
            yield from _save(points)
        outcome["reason"] = yield from _arrhenius(measured, sigmas, result)
        yield from bps.close_run(exit_status="success", reason=outcome["reason"])

    yield from _safely(potentiostat, body())
    return outcome.get("reason")


def _save(values: ComputedValues):
    yield from bps.create(name=values.name)
    yield from bps.read(values)
    yield from bps.save()


def _arrhenius(temperatures: list, sigmas: list, result: ComputedValues):
    """Fit and store the Arrhenius law if there are enough points; return the run's stop reason."""
    span = f"{len(sigmas)} temperatures, sigma {min(sigmas) * 10:.3g} to {max(sigmas) * 10:.3g} mS/cm"
    if len(sigmas) < 3:
        return f"{span}; no Arrhenius fit (needs three temperatures)"
    fit = arrhenius_fit(temperatures, sigmas)
    result.update({"activation_energy": fit.activation_energy, "activation_energy_err": fit.activation_energy_err,
                   "prefactor": fit.prefactor, "sigma_25c": float(fit.conductivity(298.15))},
                  max(temperatures))
    yield from _save(result)
    return f"{span}; E_a = {fit.activation_energy:.3f} +/- {fit.activation_energy_err:.3f} eV"


def electronic_conductivity_step(
    potentiostat,
    chamber=None,
    rig=None,
    *,
    voltage: Annotated[float, Unit("V", gt=0, le=5)] = 1.0,
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
):
    """Apply a DC voltage step to a blocking cell and follow the current to its steady state.

    The ionic current decays as the blocking electrodes charge; what remains is carried by
    electrons, sigma_e = I L / (V A). The step ends when the current changed by less than
    ``steady_tolerance`` over the last ``steady_window``, or at ``max_duration``; the steady current
    is the mean of the last fifth of the step (:func:`labctl.analysis.steady_current`), and the
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
    if cell_kind != "blocking":
        raise ValueError(f"electronic conductivity needs a blocking (e.g. Ni) cell, this one is {cell_kind}: "
                         "lithium electrodes would carry an ionic current")
    args = {k: v for k, v in locals().items() if k not in ("potentiostat", "chamber", "rig", "md")}
    environment = [d for d in (chamber, rig) if d is not None]
    result = ComputedValues(CONDUCTIVITY, source="labctl.analysis.electronic_conductivity")
    times, currents, outcome = [], [], {}

    def steady():
        # A bare Msg, not bps.rd, for speed as in run_technique.
        reading = (yield Msg("read", potentiostat.current))[potentiostat.current.name]
        times.append(reading["timestamp"])
        currents.append(reading["value"])
        back = [i for t, i in zip(times, currents) if t <= times[-1] - steady_window]
        if back and abs(currents[-1] - back[-1]) <= steady_tolerance * abs(currents[-1]):
            return "steady"
        return None

    def body():
        yield from bps.open_run(plan_metadata("electronic_conductivity_step", args, md))
        yield from bps.declare_stream(potentiostat, name=POTENTIOSTAT, collect=True)
        end, stop = yield from run_technique(
            potentiostat, CA(voltage, max_duration, sample_interval), environment,
            page_interval=page_interval, check=steady, check_interval=check_interval,
        )
        current = steady_current(times, currents)
        sigma = electronic_conductivity(voltage, current, thickness, electrode_area)
        result.update({"voltage": voltage, "steady_current": current, "sigma_electronic": sigma}, times[-1])
        yield from _save(result)
        how = "steady" if stop else f"not steady ({end})"
        outcome["reason"] = (f"{how} after {(times[-1] - times[0]) / 3600:.2f} h: I = {current * 1e9:.4g} nA, "
                             f"sigma_e = {sigma / 100:.3g} S/cm")
        yield from bps.close_run(exit_status="success", reason=outcome["reason"])

    yield from _safely(potentiostat, body())
    return outcome.get("reason")
