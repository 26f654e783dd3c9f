"""The critical current density staircase decides on a real short, on lithiophobic and lithiophilic cells:
the detector's rules on synthetic staircases, then configs/ccd-staircase.yaml on the simulated lab
with each surface; each step cycles symmetric plating and stripping half-cycles, and it records, as
the standards ask, the areal capacity of each half-cycle and the cumulative capacity (checked against
the integral of the channel's current) and those of the CCD."""

from pathlib import Path

import numpy as np
import pytest

from labctl.core.analysis import CriticalCurrentDetector, critical_current_density
from labctl.config import load_experiment, load_lab
from labctl.dryrun import dry_run
from plans import ccd_staircase
from tests.test_guards import CELL, lab  # noqa: F401  (the lab fixture: a lithiophilic cell at 30 degC, 5 MPa)

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


def stream_events(docs, name):
    """The events of stream ``name`` (of the last run that has one), in order."""
    descriptor = [d["uid"] for n, d in docs if n == "descriptor" and d["name"] == name][-1]
    return [d for n, d in docs if n == "event" and d["descriptor"] == descriptor]


def critical_stream(docs):
    (event,) = stream_events(docs, "critical_current")
    return event["data"]


def step_at(kwargs, start, when):
    """Return the staircase step (A/m^2) that was running at ``when``, from the plan's own schedule:
    ``cycles_per_step`` plate-strip cycles of ``step_capacity`` per half-cycle at each density."""
    density, elapsed = kwargs["start_density"], start
    halves = 2 * kwargs.get("cycles_per_step", 1)
    while elapsed + halves * kwargs["step_capacity"] / density <= when:
        elapsed += halves * kwargs["step_capacity"] / density
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


MAH_CM2 = 36_000.0  # C/m^2 in 1 mAh/cm^2


def half_cycles_on_disk(docs, rows_on_disk, area):
    """Each half-cycle's current density (A/m^2, signed: negative plates) and areal capacity (C/m^2)
    from the channel's rows: a half-cycle is a run of rows of one sign (the staircase alternates), its
    capacity the integral of |I| dt, each row standing for the interval since the one before."""
    time, current = rows_on_disk(docs, "_time"), rows_on_disk(docs, "_I")
    dt = np.median(np.diff(time)) if time.size > 1 else 1.0
    driven = current[current != 0]
    halves = np.split(driven, np.flatnonzero(np.diff(np.sign(driven))) + 1)
    return (np.array([np.median(h) / area for h in halves]),
            np.array([np.sum(np.abs(h)) * dt / area for h in halves]))


def charge_integrals(docs, rows_on_disk, area):
    """Each half-cycle's areal capacity (C/m^2) from the channel's rows."""
    return half_cycles_on_disk(docs, rows_on_disk, area)[1]


# (start, step, max) in mA/cm^2 and the protocol: a fixed capacity per half-cycle (mAh/cm^2) or a
# fixed time per half-cycle (h), and cycles per step; from a single step to eleven, below this cell's short.
PROTOCOLS = [
    ((0.05, 0.05, 0.05), {"step_capacity": 0.01}),
    ((0.05, 0.05, 0.25), {"step_capacity": 0.02}),
    ((0.1, 0.02, 0.3), {"step_capacity": 0.005}),
    ((0.2, 0.1, 1.0), {"step_capacity": 0.05}),
    ((0.1, 0.1, 0.3), {"step_capacity": 0.01, "cycles_per_step": 3}),
    ((0.05, 0.05, 0.2), {"step_duration": 0.25}),
    ((0.1, 0.03, 0.4), {"step_duration": 0.1}),
    ((0.5, 0.5, 1.0), {"step_duration": 0.05}),
    ((0.2, 0.2, 0.6), {"step_duration": 0.05, "cycles_per_step": 2}),
]


@pytest.mark.parametrize("stairs, protocol", PROTOCOLS)
def test_each_step_records_its_capacity_per_half_cycle_and_the_cumulative_capacity(lab, rows_on_disk, stairs,
                                                                                  protocol):
    lab, RE, docs = lab
    area = CELL.electrode_area
    start, step, stop = (10.0 * j for j in stairs)  # A/m^2
    cycles = protocol.get("cycles_per_step", 1)
    si = {k: v * {"step_capacity": MAH_CM2, "step_duration": 3600.0}.get(k, 1) for k, v in protocol.items()}
    result = RE(ccd_staircase(lab.potentiostat, lab.chamber, lab.rig, start_density=start, density_step=step,
                              max_density=stop, electrode_area=area, **si))
    assert result.exit_status == "success" and result.plan_result.startswith("no short up to"), result.plan_result
    events = [e["data"] for e in stream_events(docs, "ccd_step")]
    densities = np.array([e["ccd_step_density"] for e in events])
    directions = np.array([e["ccd_step_direction"] for e in events])
    capacities = np.array([e["ccd_step_half_cycle_capacity"] for e in events])
    cumulative = np.array([e["ccd_step_cumulative_capacity"] for e in events])
    stairs = start + step * np.arange(round((stop - start) / step) + 1)
    assert densities == pytest.approx(np.repeat(stairs, 2 * cycles))  # each step: its cycles' half-cycles
    assert list(directions) == [-1, 1] * (len(stairs) * cycles)  # plate, then strip it back
    one_sample = densities * 1.0  # C/m^2 of one 1 s sample at each step's current density
    nominal = si["step_capacity"] if "step_capacity" in si else densities * si["step_duration"]
    assert np.all(np.abs(capacities - nominal) <= one_sample), (capacities, nominal)
    signed, measured = half_cycles_on_disk(docs, rows_on_disk, area)  # the stored rows
    assert signed == pytest.approx(directions * densities, rel=1e-3)  # the current really alternated
    assert capacities == pytest.approx(measured, rel=1e-4)
    assert cumulative == pytest.approx(np.cumsum(capacities))
    (outcome,) = stream_events(docs, "result")
    assert outcome["data"]["result_cumulative_capacity"] == pytest.approx(cumulative[-1])
    assert np.isnan(outcome["data"]["result_half_cycle_capacity"]), "no short: no critical step"
    assert f"({cumulative[-1] / MAH_CM2:.4g} mAh/cm^2 cumulative)" in result.plan_result


@pytest.mark.parametrize("protocol", [{}, {"step_capacity": 360.0, "step_duration": 3600.0}])
def test_the_staircase_takes_exactly_one_protocol(lab, protocol):
    lab, RE, docs = lab
    with pytest.raises(ValueError, match="exactly one of step_capacity"):
        next(ccd_staircase(lab.potentiostat, start_density=1.0, density_step=1.0, max_density=2.0,
                           electrode_area=CELL.electrode_area, **protocol))


@pytest.mark.parametrize("surface", ["lithiophobic", "lithiophilic"])
def test_the_critical_current_density_carries_both_capacities(staircase_on, surface):
    kwargs, outcomes, docs, cell = staircase_on(surface)
    steps = [e["data"] for e in stream_events(docs, "ccd_step")]
    found = critical_stream(docs)
    (outcome,) = [e["data"] for e in stream_events(docs, "result")]
    cumulative = steps[-1]["ccd_step_cumulative_capacity"]
    assert steps[-1]["ccd_step_density"] == pytest.approx(found["critical_current_critical_density"])
    assert [s["ccd_step_direction"] for s in steps] == [-1, 1] * (len(steps) // 2) + [-1] * (len(steps) % 2)
    # the critical step's capacity per half-cycle is the protocol's, the cumulative one what passed
    for figures, prefix in ((found, "critical_current"), (outcome, "result")):
        assert figures[f"{prefix}_half_cycle_capacity"] == pytest.approx(kwargs["step_capacity"])
        assert figures[f"{prefix}_cumulative_capacity"] == pytest.approx(cumulative)
    completed = [s["ccd_step_half_cycle_capacity"] for s in steps[:-1]]
    assert completed == pytest.approx([kwargs["step_capacity"]] * len(completed), abs=steps[-1]["ccd_step_density"])
    assert steps[-1]["ccd_step_half_cycle_capacity"] < kwargs["step_capacity"], "the short cut the step short"
    assert (f"at {kwargs['step_capacity'] / MAH_CM2:.4g} mAh/cm^2 per half-cycle, "
            f"{cumulative / MAH_CM2:.4g} mAh/cm^2 cumulative") in outcomes[-1].reason


@pytest.mark.parametrize("hours", [0.1, 0.25])
def test_a_fixed_time_staircase_reports_its_critical_step_s_capacity_per_half_cycle(lab, rows_on_disk, hours):
    lab, RE, docs = lab
    area = CELL.electrode_area
    result = RE(ccd_staircase(lab.potentiostat, lab.chamber, lab.rig, start_density=20.0, density_step=20.0,
                              max_density=200.0, step_duration=hours * 3600.0, electrode_area=area))
    assert result.plan_result.startswith("critical current density"), result.plan_result
    (outcome,) = [e["data"] for e in stream_events(docs, "result")]
    critical = outcome["result_critical_density"]
    assert outcome["result_half_cycle_capacity"] == pytest.approx(critical * hours * 3600.0)
    steps = [e["data"] for e in stream_events(docs, "ccd_step")]
    measured = charge_integrals(docs, rows_on_disk, area)
    assert outcome["result_cumulative_capacity"] == pytest.approx(measured.sum(), rel=1e-4)
    assert steps[-1]["ccd_step_cumulative_capacity"] == pytest.approx(measured.sum(), rel=1e-4)
    assert f"at {critical * hours * 3600.0 / MAH_CM2:.4g} mAh/cm^2 per half-cycle" in result.plan_result
