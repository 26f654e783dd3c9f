"""What a bluesky user sees: the standard callbacks on a plating run, results as data, one clock."""

import contextlib
import io
import math
from datetime import datetime

import matplotlib
import pytest
from bluesky.callbacks import LivePlot, LiveTable
from bluesky.callbacks.best_effort import BestEffortCallback

from devices.sim.cell import CellParameters
from labctl.core.clock import VirtualClock
from labctl.lab import build_simulated_lab
from labctl.session import make_run_engine
from plans import peis, plate, set_pressure, set_temperature
from plans.electrochemistry import _plating_ended_by

matplotlib.use("Agg")
AREA = CellParameters().electrode_area
START = 1e9  # the session clock's start: 2001-09-09, far from the wall clock


def simulated(tmp_path, config, **cell):
    lab = build_simulated_lab(config, CellParameters(**cell), tmp_path, VirtualClock(start=START))
    RE = make_run_engine(lab.clock)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return lab, RE, docs


def plating_hour(lab, RE):
    RE(set_temperature(lab.chamber, temperature=303.15))
    RE(set_pressure(lab.rig, pressure=5e6))
    return RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                    geis_interval=1200.0, geis_f_min=1.0, max_duration=3600.0))


@pytest.fixture
def plating(tmp_path, lab_config):
    lab, RE, docs = simulated(tmp_path, lab_config)
    yield lab, RE, docs
    lab.close()


def clock_text(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")  # as LiveTable prints an event's time


def events(docs, stream):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in uids]


def test_best_effort_callback_shows_the_plating_voltage_on_the_session_clock(plating):
    lab, RE, docs = plating
    bec = BestEffortCallback()
    RE.subscribe(bec)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        plating_hour(lab, RE)
    text = out.getvalue()
    assert "New stream: 'primary'" in text and "potentiostat_ewe" in text
    samples = events(docs, "primary")
    assert len(samples) == 60  # one per check, every minute of the hour
    for event in samples[::10]:
        assert clock_text(event["time"]) in text
        assert f"{event['data']['potentiostat_ewe']:.3f}"[:5] in text
    # BEC plots every stream's hinted fields against time: the voltage, and the fitted resistances
    plotted = {key for plots in bec._live_plots.values() for key in plots}
    assert {"potentiostat_ewe", "impedance_fit_r_bulk", "impedance_fit_r_interface"} <= plotted
    ewe = next(p["potentiostat_ewe"] for p in bec._live_plots.values() if "potentiostat_ewe" in p)
    assert max(ewe.x_data) - min(ewe.x_data) > 3000  # seconds since the start on the session clock, not wall


def test_live_table_and_live_plot_on_any_stream_show_the_session_clock(plating):
    lab, RE, docs = plating
    fits = LiveTable(["impedance_fit_r_bulk", "impedance_fit_r_interface"], stream_name="impedance_fit")
    environment = LiveTable(["chamber_temperature", "rig_pressure"], stream_name="environment")
    voltage = LivePlot("potentiostat_ewe", x="time")
    for callback in (fits, environment, voltage):
        RE.subscribe(callback)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        plating_hour(lab, RE)
    text = out.getvalue()
    for stream in ("impedance_fit", "environment"):
        found = events(docs, stream)
        assert found
        for event in found:
            assert START <= event["time"] < START + 3 * 3600  # the session clock, which started at 1e9
            assert clock_text(event["time"]) in text
    # the fits are stamped when their sweeps ended, spread over the hour (not within a wall second)
    fit_times = [e["time"] for e in events(docs, "impedance_fit")]
    assert len(fit_times) == 4 and fit_times[-1] - fit_times[0] > 3000
    assert max(voltage.x_data) - min(voltage.x_data) > 3000  # LivePlot: seconds since the start document


def test_every_document_and_reading_is_on_the_session_clock(plating):
    lab, RE, docs = plating
    plating_hour(lab, RE)
    for name, doc in docs:
        if name in ("start", "descriptor", "event", "stop"):
            assert START <= doc["time"] <= lab.clock.now(), (name, doc.get("name"))
        if name == "event":
            for key, stamp in doc["timestamps"].items():
                assert START <= stamp <= lab.clock.now(), key
    starts = [d["time"] for n, d in docs if n == "start"]
    assert starts == sorted(starts) and starts[-1] - starts[0] > 600  # heating and pressing took time


def test_the_plating_outcome_is_a_result_event_and_in_the_stop_document(plating):
    lab, RE, docs = plating
    result = plating_hour(lab, RE)
    event = events(docs, "result")[-1]  # set_temperature and set_pressure have theirs too
    assert event["data"]["result_ended_by"] == "time" and event["data"]["result_reason"] == result.plan_result
    assert event["data"]["result_plated_capacity"] == pytest.approx(5.0 * 3600, rel=1e-3)  # C/m^2
    assert math.isnan(event["data"]["result_time_to_short"])
    descriptor = next(d for n, d in docs if n == "descriptor" and d["uid"] == event["descriptor"])
    assert descriptor["data_keys"]["result_plated_capacity"]["units"] == "C/m^2"
    assert descriptor["data_keys"]["result_ended_by"]["dtype"] == "string"
    stop = [d for n, d in docs if n == "stop"][-1]
    assert stop["result"]["ended_by"] == "time" and stop["result"]["time_to_short"] is None


def test_a_short_is_a_result_with_its_time_and_capacity(tmp_path, lab_config):
    lab, RE, docs = simulated(tmp_path, lab_config)
    try:
        RE(set_temperature(lab.chamber, temperature=303.15))
        RE(set_pressure(lab.rig, pressure=5e6))
        RE(plate(lab.potentiostat, lab.chamber, current_density=5.0, electrode_area=AREA, max_duration=24 * 3600.0))
    finally:
        lab.close()
    stop = [d for n, d in docs if n == "stop"][-1]
    assert stop["exit_status"] == "success" and stop["result"]["ended_by"] == "short", stop["reason"]
    hours = stop["result"]["time_to_short"] / 3600
    assert f"plated in {hours:.2f} h" in stop["reason"]
    assert stop["result"]["capacity_at_short"] == pytest.approx(stop["result"]["time_to_short"] * 5.0)


def narrow_window(config):
    """``config`` with a potentiostat whose voltage window (+/- 50 mV) a plating cell reaches at once."""
    potentiostat = config.instruments.potentiostat.model_copy(
        update={"current_limit": 0.01, "voltage_window": (-0.05, 0.05)})
    return config.model_copy(update={"instruments": config.instruments.model_copy(update={"potentiostat": potentiostat})})


def test_plating_ended_by_the_voltage_limit_fails_with_the_reason(tmp_path, lab_config):
    lab, RE, docs = simulated(tmp_path, narrow_window(lab_config))
    try:
        result = RE(plate(lab.potentiostat, current_density=5.0, electrode_area=AREA, max_duration=3600.0))
    finally:
        lab.close()
    stop = [d for n, d in docs if n == "stop"][-1]
    assert stop["exit_status"] == "fail" and stop["reason"] == result.plan_result == "voltage limit of the potentiostat reached"
    assert stop["result"]["ended_by"] == "voltage_limit"


@pytest.mark.parametrize("stop, end, reason, expected", [
    (None, "voltage limit", "voltage limit of the potentiostat reached", "voltage_limit"),
    ("guard: the potentiostat reached its voltage limit; ended", "voltage limit", "", "voltage_limit"),
    ("guard: pressure 2.1 MPa is more than 0.5 MPa from its setpoint; ended", "completed", "", "guard"),
    ("short circuit: |Ewe| below 10 mV for 60 s", "completed", "", "short"),
    ("short circuit: |Ewe| below 10 mV for 60 s", "voltage limit", "", "short"),
    (None, "completed", "capacity reached: 5.000 mAh/cm^2", "capacity"),
    (None, "completed", "time limit reached: 1.00 h", "time"),
])
def test_why_plating_ended(stop, end, reason, expected):
    assert _plating_ended_by(stop, end, reason) == expected


def test_a_blocking_cells_fits_are_hinted_and_have_units(tmp_path, lab_config):
    lab, RE, docs = simulated(tmp_path, lab_config, kind="blocking")
    try:
        RE(peis(lab.potentiostat, electrode_area=AREA, cell_kind="blocking", f_min=10.0))
    finally:
        lab.close()
    descriptor = next(d for n, d in docs if n == "descriptor" and d["name"] == "impedance_fit")
    assert descriptor["hints"]["impedance_fit"]["fields"]
    units = {k: v.get("units") for k, v in descriptor["data_keys"].items()}
    assert all(units[f] == "ohm" for f in descriptor["hints"]["impedance_fit"]["fields"])
    assert [d for n, d in docs if n == "stop"][-1]["result"]["ended_by"] == "spectra"


@pytest.mark.parametrize("kind, surface", [("symmetric", "lithiophobic"), ("tracer", "lithiophilic"), ("blocking", None)])
def test_only_cells_with_lithium_are_labelled_by_a_lithium_surface(kind, surface):
    from labctl.config import Cell

    cell = Cell(id="C-1", kind=kind, thickness="1.2 mm", electrode_diameter="2 mm",
                surface="lithiophilic" if kind == "tracer" else "lithiophobic")
    assert cell.to_metadata()["surface"] == surface


def test_labctl_run_bec_prints_the_voltage_and_the_fits(plating):
    from labctl.cli import subscribe_standard_callbacks

    lab, RE, docs = plating
    subscribe_standard_callbacks(RE, plots=False)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        RE(plate(lab.potentiostat, current_density=5.0, electrode_area=AREA, geis_interval=600.0, geis_f_min=10.0,
                 max_duration=1200.0))
    text = out.getvalue()
    assert "potentiostat_ewe" in text and "impedance_fit_r_bulk" in text and "impedance_fit_r_interface" in text
    for event in events(docs, "impedance_fit"):  # a row per fit, at its time on the session clock
        assert clock_text(event["time"]) in text
