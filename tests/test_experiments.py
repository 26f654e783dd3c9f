"""Every example experiment in configs/ validates, runs to completion on the simulated lab (a dry run:
virtual clock, nothing stored), and measures what the simulator was given."""

from pathlib import Path

import numpy as np
import pytest

from devices.sim.cell import CellParameters
from labctl.config import load_experiment, load_lab
from labctl.dryrun import dry_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("lab"))
MODEL = CellParameters()


class Results:
    """A dry run's outcomes, documents by stream, and the simulators' state at the end."""

    def __init__(self, path: Path):
        experiment = load_experiment(path)
        experiment = load_experiment(path, lab=load_lab(experiment.lab_path))
        self.docs, self.sims = [], {}
        self.outcomes = dry_run(experiment, load_lab(experiment.lab_path), on_document=self._keep,
                                inspect=lambda lab: self.sims.update(lab.simulators))
        self.reasons = [o.reason for o in self.outcomes]

    def _keep(self, name, doc):
        self.docs.append((name, doc))

    def stream(self, name: str, plan: str | None = None) -> list[dict]:
        """Return the events' data of one stream (of one plan's runs, if given)."""
        starts = {d["uid"]: d["plan_name"] for n, d in self.docs if n == "start"}
        descriptors = {d["uid"]: d for n, d in self.docs if n == "descriptor" and d["name"] == name
                       and (plan is None or starts[d["run_start"]] == plan)}
        return [d["data"] for n, d in self.docs if n == "event" and d["descriptor"] in descriptors]


@pytest.fixture(scope="module")
def results():
    cache = {}

    def get(name: str) -> Results:
        if name not in cache:
            cache[name] = Results(CONFIGS / f"{name}.yaml")
        return cache[name]

    return get


def test_every_example_experiment_runs_to_completion(results):
    assert len(EXPERIMENTS) >= 6
    for path in EXPERIMENTS:
        outcomes = results(path.stem).outcomes
        experiment = load_experiment(path)
        assert [o.plan for o in outcomes] == [s.plan for s in experiment.steps for _ in range(s.repeat)], path.name
        assert all(o.exit_status == "success" for o in outcomes), [o.reason for o in outcomes]


def test_the_arrhenius_fit_finds_the_model_activation_energy(results):
    run = results("conductivity-arrhenius")
    (fit,) = run.stream("arrhenius")
    assert fit["arrhenius_activation_energy"] == pytest.approx(MODEL.bulk_activation_energy, rel=0.03)
    points = run.stream("conductivity")
    assert len(points) == 6
    assert np.all(np.diff([p["conductivity_temperature"] for p in points]) > 0)
    # the bulk resistance at each temperature is the simulator's own (the fit is of the bulk arc)
    cell = run.sims["cell"]
    for point in points:
        expected = cell.bulk_resistance(point["conductivity_temperature"])
        assert point["conductivity_r_bulk"] == pytest.approx(expected, rel=0.05)
    assert f"E_a = {fit['arrhenius_activation_energy']:.3f}" in run.reasons[-1]


def test_the_staircase_reports_the_step_at_which_the_simulated_cell_shorted(results):
    run = results("ccd-staircase")
    (found,) = run.stream("critical_current")
    state = run.sims["cell"].state
    # lithium reached the counter electrode: a soft short (a filament that burns out) or the hard one
    shorts = [(start, end) for start, end, _ in state.soft_shorts]
    shorts += [(state.short_time, np.inf)] if state.short_time is not None else []
    seen = found["critical_current_short_time"]
    assert any(start <= seen <= end + 10 for start, end in shorts), (seen, shorts)  # within a check interval
    # the critical value lies above the applied density at which the hot spots pass the model's limit
    onset = MODEL.critical_current_density / MODEL.edge_factor
    assert onset < found["critical_current_critical_density"] <= 80.0
    assert found["critical_current_last_stable"] == found["critical_current_critical_density"] - 5.0
    critical = found["critical_current_critical_density"] / 10  # mA/cm^2
    assert run.reasons[-1].startswith(f"critical current density {critical:g} mA/cm^2")


def test_plating_stripping_cycles_measure_an_impedance_between_half_cycles(results):
    run = results("plating-stripping")
    fits = run.stream("impedance_fit", plan="plate_strip")
    assert len(fits) == 1 + 2 * 3
    assert run.reasons[-1] == "3 cycles of 1 h at 0.1 mA/cm^2"
    bulk = run.sims["cell"].bulk_resistance(303.15)
    assert np.median([f["impedance_fit_r_bulk"] for f in fits]) == pytest.approx(bulk, rel=0.05)
    assert run.sims["cell"].state.short_time is None


def test_electronic_conductivity_of_the_blocking_cell(results):
    run = results("electronic-conductivity")
    (result,) = run.stream("conductivity", plan="electronic_conductivity_step")
    assert result["conductivity_sigma_electronic"] == pytest.approx(MODEL.electronic_conductivity, rel=0.05)
    assert run.reasons[-1].startswith("steady after")


def test_conditioning_reaches_170_degC_and_comes_back_stable(results):
    run = results("conditioning")
    temperatures = [e["chamber_temperature"] for e in run.stream("environment", plan="condition_cell")]
    assert max(temperatures) == pytest.approx(443.15, abs=1.0)
    assert temperatures[-1] == pytest.approx(303.15, abs=0.5)
    pressures = [e["rig_pressure"] for e in run.stream("environment", plan="pressure_program")]
    assert np.all(np.diff(pressures[:10]) >= -0.05e6)  # a ramp, not a jump
    assert pressures[-1] == pytest.approx(5e6, abs=0.1e6)
    assert len(run.stream("impedance_fit", plan="peis")) == 2


def test_the_overnight_plating_stops_at_the_simulated_short(results):
    run = results("plating-overnight")
    assert run.reasons[-1].startswith("short circuit")
    assert run.sims["cell"].state.short_time is not None
