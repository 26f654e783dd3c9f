"""The one rule set (labctl.safety): each rule swept over the range a lab file allows, at load and on one plan call."""

from __future__ import annotations

import functools
import re
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from labctl import safety
from labctl.core.clock import VirtualClock
from labctl.config import Cell, load_experiment, load_lab
from labctl.dryrun import dry_run
from labctl.core.errors import ConfigErrors, LabctlError
from labctl.lab import build_simulated_lab, cell_parameters

ROOT = Path(__file__).resolve().parents[1]
LAB_SIM = ROOT / "configs" / "lab-sim.yaml"
KINDS = {"symmetric": True, "tracer": True, "blocking": False}  # kind -> lithium in the cell
CELSIUS = np.round(np.arange(-40.0, 200.01, 0.5), 2)  # the chamber range of lab-sim, every half degree


@pytest.fixture(scope="module")
def lab():
    return load_lab(LAB_SIM)


@pytest.fixture(scope="module")
def lab_without_mtz(lab):
    return lab.model_copy(update={"instruments": lab.instruments.model_copy(update={"impedance_analyser": None})})


@functools.cache
def cell(kind: str = "symmetric", area: str = "0.0314 cm^2") -> Cell:
    return Cell.model_validate({"id": f"c-{kind}", "kind": kind, "thickness": "1.2 mm", "electrode_area": area})


def stub_lab(safe_setpoint: float):
    """A lab config with only what lab_default_problems reads (model_copy per point is slow)."""
    return SimpleNamespace(instruments=SimpleNamespace(chamber=SimpleNamespace(safe_setpoint=safe_setpoint)))


def with_safe_setpoint(lab, kelvin: float):
    chamber = lab.instruments.chamber.model_copy(update={"safe_setpoint": kelvin})
    return lab.model_copy(update={"instruments": lab.instruments.model_copy(update={"chamber": chamber})})


def melts(messages) -> bool:
    return any("melt" in str(m) for m in messages)


# ---- the lithium interlock, wherever a temperature comes from ------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_step_temperatures_melt_lithium_exactly_from_180_5_degc(lab, kind):
    for celsius in CELSIUS:
        refused = melts(safety.temperature_problems(celsius + 273.15, cell(kind), lab))
        assert refused == (KINDS[kind] and celsius >= 180.5), celsius


@pytest.mark.parametrize("kind", KINDS)
def test_the_lab_safe_setpoint_obeys_the_same_rule(lab, kind):
    for celsius in CELSIUS:
        problems = safety.lab_default_problems(stub_lab(celsius + 273.15), cell(kind))
        assert bool(problems) == (KINDS[kind] and celsius >= 180.5), celsius
        assert all(field == ("instruments", "chamber", "safe_setpoint") for field, _ in problems)


def test_a_hot_safe_setpoint_is_refused_at_load_in_the_lab_file_only_for_a_lithium_cell(tmp_path):
    lab_text = LAB_SIM.read_text().replace("safe_setpoint: 25 degC ", "safe_setpoint: 185 degC")
    (tmp_path / "lab.yaml").write_text(lab_text)
    line = next(n for n, text in enumerate(lab_text.splitlines(), 1) if "safe_setpoint:" in text)
    experiment = (ROOT / "configs" / "plating-overnight.yaml").read_text().replace("lab: lab-sim.yaml", "lab: lab.yaml")
    (tmp_path / "li.yaml").write_text(experiment)
    hot_lab = load_lab(tmp_path / "lab.yaml")  # valid on its own: 185 degC is inside the chamber's range
    with pytest.raises(ConfigErrors) as caught:
        load_experiment(tmp_path / "li.yaml", lab=hot_lab)
    (error,) = caught.value.errors
    assert (error.path, error.line, error.field) == (str(tmp_path / "lab.yaml"), line, "instruments.chamber.safe_setpoint")
    blocking = (ROOT / "configs" / "electronic-conductivity.yaml").read_text()
    (tmp_path / "ni.yaml").write_text(blocking.replace("lab: lab-sim.yaml", "lab: lab.yaml"))
    assert not load_experiment(tmp_path / "ni.yaml", lab=hot_lab).cell.contains_lithium


@pytest.mark.parametrize("contains_lithium", [True, False])
def test_make_safe_never_sends_a_melting_safe_setpoint_to_the_chamber(tmp_path, lab, contains_lithium):
    config = with_safe_setpoint(lab, 190 + 273.15)
    chamber = config.instruments.chamber.model_copy(update={"kind": "sim"})  # in process: no wire server to start
    config = config.model_copy(update={"instruments": config.instruments.model_copy(update={"chamber": chamber})})
    rig_lab = build_simulated_lab(config, cell_parameters(cell()), tmp_path, VirtualClock())
    try:
        rig_lab.chamber.contains_lithium.put(contains_lithium)
        before = rig_lab.simulators["chamber"].setpoint
        (action,) = [a for a in rig_lab.make_safe() if a.instrument == "chamber"]
        if contains_lithium:
            assert not action.ok and "LithiumWouldMelt" in action.error and "190.00 degC" in action.error
            assert rig_lab.simulators["chamber"].setpoint == before
        else:
            assert action.ok and rig_lab.simulators["chamber"].setpoint == pytest.approx(463.15)
    finally:
        rig_lab.close()


def test_a_guard_band_may_not_carry_a_lithium_cell_to_its_melting_point():
    class Band:
        def __init__(self, kelvin):
            self.temperature = type("TemperatureGuard", (), {"band": kelvin})()

    for celsius in np.arange(160.0, 180.01, 0.5):
        for band in (0.5, 1.0, 2.0, 5.0, 10.0, 20.0):
            steps = [("set_temperature", {"temperature": celsius + 273.15}), ("plate", {})]
            for kind, lithium in KINDS.items():
                problems = safety.guard_problems(Band(band), steps, cell(kind))
                assert bool(problems) == (lithium and celsius + band >= 180.5), (celsius, band, kind)
    # the setpoint of a guarded step is the last one set before it: a conditioning step's test temperature
    steps = [("condition_cell", {"temperature": 443.15, "test_temperature": 303.15}), ("plate", {})]
    assert safety.guard_problems(Band(5.0), steps, cell()) == []


# ---- the instrument a plan runs on ----------------------------------------------------------------
FREQUENCIES = [float(f"{f:.15g}") for f in np.logspace(-7, 8.5, 63)]  # as parsed: 15 significant digits


@pytest.mark.parametrize("plan, field, mtz, high", [
    ("peis", "f_max", True, 35e6), ("peis", "f_max", False, 7e6), ("plate", "geis_f_max", True, 7e6),
    ("plate_strip", "geis_f_max", True, 7e6),
    # the Arrhenius series sweeps on the MTZ-35 when the lab has one (plans.conductivity takes it by role)
    ("ionic_conductivity_arrhenius", "f_max", True, 35e6), ("ionic_conductivity_arrhenius", "f_max", False, 7e6),
])
def test_sweeps_are_held_to_the_range_of_the_instrument_they_run_on(lab, lab_without_mtz, plan, field, mtz, high):
    this_lab = lab if mtz else lab_without_mtz
    f_min_name, f_max_name, ppd_name, _ = safety.SWEEPS[plan]
    for f_max in FREQUENCIES:
        kwargs = {f_min_name: 10e-6, f_max_name: f_max, ppd_name: 1}
        problems = [m for f, m in safety.sweep_problems(plan, kwargs, this_lab) if f == (f_max_name,)]
        assert bool(problems) == (not 10e-6 <= f_max <= high), f_max
        kwargs = {f_min_name: f_max, f_max_name: high, ppd_name: 1}
        problems = [m for f, m in safety.sweep_problems(plan, kwargs, this_lab) if f == (f_min_name,)]
        assert bool(problems) == (not 10e-6 <= f_max < high), f_max  # the floor, and below f_max


@pytest.mark.parametrize("plan", ["plate", "plate_strip"])
def test_a_geis_amplitude_never_exceeds_the_current_density(lab, plan):
    for density in np.logspace(math.log10(0.5), math.log10(100.0), 25):  # 0.05 to 10 mA/cm^2, in A/m^2
        for ratio in (0.01, 0.1, 0.5, 0.999, 1.0, 1.001, 2.0, 10.0):
            kwargs = {"current_density": density, "geis_amplitude": ratio * density}
            refused = [m for f, m in safety.geis_problems(plan, kwargs, cell(area="0.01 cm^2"), lab)
                       if "never drives" in m]
            assert bool(refused) == (ratio > 1.0), (density, ratio)


def test_the_geis_peak_stays_within_the_current_limit(lab):
    area = cell(area="1 cm^2")  # 10 mA limit: 10 mA/cm^2 alone is at it
    for density in np.linspace(1.0, 100.0, 34):  # 0.1 to 10 mA/cm^2
        for amplitude in np.linspace(0.1, 1.0, 10) * density:
            problems = safety.geis_problems("plate", {"current_density": density, "geis_amplitude": amplitude}, area, lab)
            assert bool(problems) == ((density + amplitude) * 1e-4 > 0.010 + 1e-15), (density, amplitude)


def test_the_mtz35_amplitude_is_capped_by_the_lab(lab):
    for millivolts in (1, 10, 50, 100, 100.1, 200, 1000):
        problems = safety.sweep_problems("peis", {"f_min": 1.0, "f_max": 1e6, "points_per_decade": 10,
                                                  "amplitude": millivolts / 1000}, lab)
        assert bool(problems) == (millivolts > 100), millivolts


# ---- sizes ----------------------------------------------------------------------------------------
def test_the_sample_budget_over_durations_and_intervals():
    for hours in (0.1, 1.0, 24.0, 168.0, 2000.0, 8000.0):
        for interval in (0.001, 0.01, 0.1, 1.0, 10.0):
            kwargs = {"duration": hours * 3600, "sample_interval": interval, "page_interval": 3600.0}
            refused = [m for f, m in safety.SIZES["rest"](kwargs, None) if f == ("sample_interval",)]
            assert bool(refused) == (hours * 3600 / interval > safety.MAX_ROWS), (hours, interval)


def test_a_staircase_ascends_and_has_a_bounded_number_of_stairs():
    for start, stop in ((1.0, 0.5), (1.0, 1.0), (1.0, 5.0)):
        assert bool(safety.order_problems("ccd_staircase", {"start_density": start, "max_density": stop})) == (stop < start)
    for step in (1e-4, 1e-3, 1e-2, 0.1):
        kwargs = {"start_density": 1.0, "density_step": step, "max_density": 11.0, "step_capacity": 36.0,
                  "sample_interval": 1.0, "check_interval": 10.0, "page_interval": 900.0}
        refused = [m for f, m in safety.SIZES["ccd_staircase"](kwargs, None) if f == ("density_step",)]
        assert bool(refused) == (10.0 / step + 1 > safety.MAX_STAIRS), step


# ---- one plan call, as the shell or a queue makes it -----------------------------------------------
def test_one_plan_call_is_checked_with_its_defaults_and_its_annotated_bounds(lab):
    li = cell()
    safety.refuse_unsafe_call("set_temperature", {"temperature": 453.0}, lab, li)  # 179.85 degC: allowed
    with pytest.raises(safety.UnsafePlanCall, match="set_temperature: temperature: 181 degC would melt"):
        safety.refuse_unsafe_call("set_temperature", {"temperature": 454.15}, lab, li)
    with pytest.raises(LabctlError):  # so the CLI and the shell print it in one line
        safety.refuse_unsafe_call("set_temperature", {"temperature": 454.15}, lab, li)
    # plate's default GEIS amplitude (0.05 mA/cm^2) is above a 0.03 mA/cm^2 plating current
    with pytest.raises(safety.UnsafePlanCall, match="geis_amplitude: 0.05 mA/cm\\^2 is above the current_density"):
        safety.refuse_unsafe_call("plate", {"current_density": 0.3, "electrode_area": 3.14e-6}, lab, li)
    problems = safety.call_problems("plate", {"current_density": math.inf, "electrode_area": 3.14e-6}, lab, li)
    assert problems == [(("current_density",), "inf A/m² (SI) is out of range: allowed > 0 and <= 100 mA/cm^2")]
    assert safety.call_problems("peis", {"repeats": 0, "electrode_area": 3.14e-6}, lab, li)[0][0] == ("repeats",)
    assert safety.call_problems("ionic_conductivity_arrhenius", {"temperatures": [], "electrode_area": 3.14e-6,
                                                                 "thickness": 1e-3}, lab, li)[0][0] == ("temperatures",)
    assert safety.call_problems("peis", {"f_max": 20e6, "electrode_area": 3.14e-6}, lab, li) == []  # on the MTZ-35
    assert safety.call_problems("heat", {}, lab, li)[0][0] == ("plan",)


# ---- the dry run never shows a traceback ----------------------------------------------------------
def test_a_step_that_raises_in_the_dry_run_is_one_line_naming_the_step(lab):
    def boom(potentiostat, *, md=None, **step_arguments):
        raise RuntimeError("a gap in the checks\nwith a second line")
        yield  # a plan

    experiment = load_experiment(ROOT / "configs" / "plating-overnight.yaml")
    experiment.steps[0].plan = "boom"
    (outcome,) = dry_run(experiment, lab, registry={"boom": boom})
    assert outcome.exit_status == "fail" and "\n" not in outcome.reason
    assert outcome.reason.startswith("labctl bug: step 1 (boom) raised RuntimeError: a gap in the checks with a second")


# ---- every plan of the catalog at the ends of its allowed ranges: `labctl check`, then its dry run ----
# A short, valid call of each plan; each case below moves one argument to an end of its range.
SWEEP_BASE = {
    "set_temperature": {"temperature": "30 degC", "record_interval": "60 s"},
    "set_pressure": {"pressure": "5 MPa"},
    "condition_cell": {"test_temperature": "30 degC", "hold": "10 min"},
    "pressure_program": {"pressure": "5 MPa", "hold": "10 min"},
    "rest": {"duration": "10 min"},
    "plate": {"current_density": "0.5 mA/cm^2", "max_duration": "20 min", "geis_interval": "10 min"},
    "plate_strip": {"current_density": "0.5 mA/cm^2", "half_cycle": "10 min", "cycles": 2},
    "ccd_staircase": {"start_density": "0.1 mA/cm^2", "density_step": "0.1 mA/cm^2", "max_density": "0.3 mA/cm^2",
                      "step_capacity": "0.005 mAh/cm^2"},
    "peis": {},
    "ionic_conductivity_arrhenius": {"temperatures": ["25 degC", "35 degC"]},
    "electronic_conductivity_step": {"max_duration": "20 min"},
}
SWEEP_CELL = {"electronic_conductivity_step": "blocking"}  # a blocking cell; the rest on lithium


def _ends(annotation) -> list[str]:
    """The ends of an argument's allowed range as a file would write them (an open end just inside it)."""
    from labctl.catalog import find_unit
    from labctl.core.units import Count

    unit = find_unit(annotation)
    count = next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Count)), None)
    if count is not None:
        return [str(count.ge), str(count.le if count.le is not None else 10**9)]
    if unit is None:
        return []
    low = unit.ge if unit.ge is not None else (unit.gt * (1 + 1e-6) + 1e-6 if unit.gt is not None else -1e9)
    high = unit.le if unit.le is not None else (unit.lt * (1 - 1e-6) if unit.lt is not None else 1e9)
    return [f"{low!r} {unit.display}", f"{high!r} {unit.display}"]


def _sweep_cases():
    import typing

    from labctl.config import RUNNER_FILLED
    from plans import PLANS

    for name, plan in PLANS.items():
        first = True  # the suite runs one case per plan; `pytest -m sweep` runs every other
        for argument, annotation in typing.get_type_hints(plan, include_extras=True).items():
            if argument in RUNNER_FILLED:
                continue
            list_of = typing.get_origin(typing.get_args(annotation)[0] if typing.get_args(annotation) else None) is list
            ends = _ends(typing.get_args(typing.get_args(annotation)[0])[0]) if list_of else _ends(annotation)
            for end in ends:
                marks = [pytest.mark.skip(reason=SLOW[(name, argument, end)])] if (name, argument, end) in SLOW else []
                if not first:
                    marks.append(pytest.mark.sweep)
                first = False
                yield pytest.param(name, argument, [end] if list_of else end, id=f"{name}-{argument}={end}",
                                   marks=marks)


# Allowed, and no crash, but longer than a test may take: the budgets allow it (see labctl.safety).
SLOW = {("peis", "repeats", "10000"): "10,000 spectra, each fitted, take minutes in the dry run"}


@pytest.mark.parametrize("plan, argument, value", list(_sweep_cases()))
def test_every_plan_at_the_ends_of_its_ranges_is_refused_in_one_line_or_dry_runs_without_a_bug(
        tmp_path, capsys, plan, argument, value):
    import yaml

    from labctl.cli import main

    step = {"plan": plan, **SWEEP_BASE[plan], argument: value}
    experiment = {"name": "sweep", "lab": str(LAB_SIM),
                  "cell": {"id": "SWEEP-1", "kind": SWEEP_CELL.get(plan, "symmetric"), "surface": "lithiophilic",
                           "thickness": "1.2 mm", "electrode_diameter": "2 mm"},
                  "steps": [step]}  # a step that fails on the simulated cell (a short) is no bug: a crash is
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "labctl bug" not in out + err, out + err
    if code == 3:  # refused: every message located in the file, one line each
        lines = err.strip().splitlines()
        assert lines and all(re.match(rf"error: {re.escape(str(path))}:\d+: \S+: ", line) for line in lines), err
    else:
        assert code in (0, 1) and "estimated total" in out, out + err  # the dry run ran to its end


@pytest.mark.parametrize("plan, settle", [("set_temperature", safety.CHAMBER_SETTLE), ("set_pressure", safety.RIG_SETTLE)])
@pytest.mark.parametrize("interval", np.geomspace(1e-4, 1e5, 37))
def test_a_sets_record_interval_is_bounded_by_the_wait_it_records(plan, settle, interval):
    kwargs = {"temperature": 300.0, "soak": 0.0} if plan == "set_temperature" else {"pressure": 5e6}
    problems = safety.plan_problems(plan, {**kwargs, "record_interval": float(interval)})
    allowed = settle / safety.MAX_WAKEUPS <= interval <= settle
    assert (problems == []) == allowed, problems
    assert all(field == ("record_interval",) for field, _ in problems)


@pytest.mark.parametrize("low", [-80.0, -40.0, -40.0 + 1e-7, 0.0])
@pytest.mark.parametrize("high", [100.0, 200.0, 200.0 + 1e-6, 250.0])
def test_a_lab_chamber_range_must_lie_within_the_controllers_own_limits(low, high):
    problems = safety.chamber_range_problems("eurotherm-3200", (low + 273.15, high + 273.15))
    assert (problems == []) == (low >= -40.0 and high <= 200.0)  # 1e-6 K past is past
    assert all(field == "temperature_range" and "allowed within [-40 degC, 200 degC]" in message
               for field, message in problems)
