"""The critical current density staircase decides on a real short, on lithiophobic and lithiophilic cells:
the detector's rules on synthetic staircases, then configs/ccd-staircase.yaml on the simulated lab
with each surface."""

from pathlib import Path

import numpy as np
import pytest

from labctl.core.analysis import CriticalCurrentDetector, critical_current_density
from labctl.config import load_experiment, load_lab
from labctl.dryrun import dry_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
AREA = np.pi * 1e-6  # m^2, 2 mm electrodes
R_SHORT = 480.0  # ohm


def staircase(asr, steps=(5.0, 10.0, 15.0), duration=600.0, every=10.0):
    """Readings every ``every`` s of a staircase of ``steps`` (A/m^2), V = j * asr(t) (ohm m^2)."""
    t = np.arange(0.0, len(steps) * duration, every)
    j = np.asarray(steps)[(t // duration).astype(int)]
    v = j * asr(t) + np.random.default_rng(0).normal(0.0, 2e-4, t.size)
    return t, j, v


def wetting(t):
    """A lithiophobic interface wetting at 0.5 mA/cm^2: 2000 to 500 ohm cm^2 (both electrodes), bulk 0.01."""
    return 0.01 + 0.05 + 0.15 * np.exp(-t / 48.0)


def shorted_at(when, asr=lambda t: np.full_like(t, 0.06), until=np.inf):
    """The cell's resistance with a R_SHORT filament across it from ``when`` to ``until``."""
    def shorted(t):
        base = asr(t)
        bridged = (t >= when) & (t < until)
        return np.where(bridged, 1 / (1 / base + 1 / (R_SHORT * AREA)), base)  # in parallel, per area
    return shorted


def test_a_wetting_lithiophobic_interface_is_not_a_short():
    t, j, v = staircase(wetting)
    assert v[0] / v[30] > 3, "the resistance falls more than threefold during the first step"
    found = critical_current_density(t, j, v)
    assert found.density is None and found.time is None
    assert found.last_stable == 15.0


def test_a_short_after_wetting_is_found_in_its_step():
    t, j, v = staircase(shorted_at(900.0, wetting))
    found = critical_current_density(t, j, v)
    assert (found.density, found.last_stable, found.time) == (10.0, 5.0, 900.0)


def test_a_soft_short_shorter_than_the_hold_passes():
    t, j, v = staircase(shorted_at(700.0, until=730.0))
    assert critical_current_density(t, j, v, hold=60.0).density is None
    assert critical_current_density(t, j, v, hold=20.0).density == 10.0  # a shorter hold takes it


def test_a_short_in_the_first_step_has_no_stable_step():
    t, j, v = staircase(shorted_at(100.0))
    found = critical_current_density(t, j, v)
    assert (found.density, found.last_stable, found.time) == (5.0, None, 100.0)


def test_a_collapse_still_under_way_at_the_end_holds_nothing():
    detector = CriticalCurrentDetector(hold=60.0)
    for time, density, volts in [(0.0, 5.0, 0.3), (10.0, 10.0, 0.6), (20.0, 10.0, 0.05)]:
        assert detector.add(time, density, volts) is None
    outcome = detector.outcome()
    assert (outcome.density, outcome.last_stable) == (None, 5.0)


@pytest.fixture(scope="module")
def staircase_on(tmp_path_factory):
    """Run configs/ccd-staircase.yaml on the simulated lab with the cell's surface given; keep its results."""
    runs = {}

    def run(surface: str):
        if surface not in runs:
            text = (CONFIGS / "ccd-staircase.yaml").read_text()
            text = text.replace("surface: lithiophilic", f"surface: {surface}")
            text = text.replace("lab: lab-sim.yaml", f"lab: {CONFIGS / 'lab-sim.yaml'}")
            path = tmp_path_factory.mktemp(surface) / "ccd.yaml"
            path.write_text(text)
            lab = load_lab(CONFIGS / "lab-sim.yaml")
            experiment = load_experiment(path, lab=lab)
            docs, sims = [], {}
            outcomes = dry_run(experiment, lab, on_document=lambda name, doc: docs.append((name, doc)),
                               inspect=lambda built: sims.update(built.simulators))
            runs[surface] = (experiment.steps[-1].kwargs, outcomes, docs, sims["cell"])
        return runs[surface]

    return run


def critical_stream(docs):
    (descriptor,) = [d["uid"] for n, d in docs if n == "descriptor" and d["name"] == "critical_current"]
    (event,) = [d["data"] for n, d in docs if n == "event" and d["descriptor"] == descriptor]
    return event


def step_at(kwargs, start, when):
    """Return the staircase step (A/m^2) that was running at ``when``, from the plan's own schedule."""
    density, elapsed = kwargs["start_density"], start
    while elapsed + kwargs["step_capacity"] / density <= when:
        elapsed += kwargs["step_capacity"] / density
        density += kwargs["density_step"]
    return density


@pytest.mark.parametrize("surface", ["lithiophobic", "lithiophilic"])
def test_the_staircase_stops_at_the_simulated_cell_s_short(staircase_on, surface):
    kwargs, outcomes, docs, cell = staircase_on(surface)
    assert [o.exit_status for o in outcomes] == ["success"] * 3
    found = critical_stream(docs)
    short = cell.state.short_time
    assert short is not None, "the cell really shorted"
    # Seen at the first check after the filament bridged the pellet (checks are 10 s apart), or at
    # a soft short that ran into it (no check in between) and so began the collapse.
    seen = found["critical_current_short_time"]
    soft = [(begin, end) for begin, end, _ in cell.state.soft_shorts if end + 10.0 >= short]
    assert short <= seen <= short + 10.0 or any(begin <= seen < end for begin, end in soft), (seen, short, soft)
    (start,) = [d["clock_time"] for n, d in docs if n == "start" and d["plan_name"] == "ccd_staircase"]
    critical = step_at(kwargs, start, short)
    assert found["critical_current_critical_density"] == pytest.approx(critical)
    assert found["critical_current_last_stable"] == pytest.approx(critical - kwargs["density_step"])
    assert outcomes[-1].reason.startswith(f"critical current density {critical / 10:g} mA/cm^2")


def test_a_lithiophobic_interface_shorts_at_a_lower_current_density(staircase_on):
    """cell-model.md: a poor interface focuses the current on few contact points."""
    lithiophobic, lithiophilic = (critical_stream(staircase_on(s)[2]) for s in ("lithiophobic", "lithiophilic"))
    assert lithiophobic["critical_current_critical_density"] < lithiophilic["critical_current_critical_density"]
