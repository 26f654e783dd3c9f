"""The live figure, headless (Agg), fed the documents of a real simulated plating run to its short."""

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (before pyplot: the figure must never need a display here)
import matplotlib.pyplot as plt
import numpy as np
import pytest

from devices.sim.cell import CellParameters
from labctl.core.clock import VirtualClock
from labctl.core.errors import LabctlError
from labctl.lab import build_simulated_lab
from labctl.liveplot import LivePlatingFigure, display_available, live_plot_callback
from labctl.session import make_run_engine
from plans import plate, rest, set_pressure, set_temperature

AREA = CellParameters().electrode_area
CHECK_INTERVAL = 60.0  # plate's default: how often the voltage rule looks at the voltage


class Recorded:
    """A simulated session's documents, by run, and the live figure that was subscribed to it."""

    def __init__(self, lab, docs, figure):
        self.lab, self.docs, self.figure = lab, docs, figure

    def run(self, plan_name):
        """Return the documents of the (last) run of ``plan_name``."""
        starts = [i for i, (n, d) in enumerate(self.docs) if n == "start" and d["plan_name"] == plan_name]
        tail = self.docs[starts[-1]:]
        return tail[:next(i for i, (n, _) in enumerate(tail) if n == "stop") + 1]

    def events(self, plan_name, stream):
        docs = self.run(plan_name)
        descriptors = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
        return [d for n, d in docs if n == "event" and d["descriptor"] in descriptors]


@pytest.fixture(scope="module")
def session(tmp_path_factory, lab_config):
    """A lithiophobic cell heated, pressed, rested 10 min and plated at 0.5 mA/cm^2 until it shorts
    (a few simulated hours, about a second here), with a live figure subscribed throughout."""
    lab = build_simulated_lab(lab_config, CellParameters(), tmp_path_factory.mktemp("live"), VirtualClock(start=1e9))
    RE = make_run_engine(lab.clock)
    docs, figure = [], LivePlatingFigure()
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE.subscribe(figure)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BLUESKY_DEBUG_CALLBACKS", "1")  # let a plotting error fail the test, not only be logged
        RE(set_temperature(lab.chamber, temperature=303.15))
        RE(set_pressure(lab.rig, pressure=5e6))
        RE(rest(lab.potentiostat, lab.chamber, lab.rig, duration=600.0))
        RE(plate(lab.potentiostat, lab.chamber, lab.rig, current_density=5.0, electrode_area=AREA,
                 geis_amplitude=0.5, max_duration=24 * 3600.0, md={"clock_time": lab.clock.now()}))
    yield Recorded(lab, docs, figure)
    plt.close("all")
    lab.close()


def hours(recorded, time):
    return (np.asarray(time, dtype=float) - recorded.run("plate")[0][1]["clock_time"]) / 3600


def test_voltage_panel_draws_each_minutes_lowest_and_highest_row(session, rows_on_disk):
    plating = session.run("plate")
    time, volts = rows_on_disk(plating, "_time"), rows_on_disk(plating, "_Ewe")
    assert len(time) == plating[-1][1]["num_events"]["potentiostat"] > 5_000  # the pages of hours at 1 Hz (this seed shorts at 2.6 h)
    x, y = session.figure.artists["voltage"].get_data()
    minutes = np.floor(time / 60)
    for i, minute in enumerate(np.unique(minutes)):
        rows = minutes == minute
        assert x[2 * i] == x[2 * i + 1] == hours(session, time[rows][0])
        assert (y[2 * i], y[2 * i + 1]) == (volts[rows].min() * 1e3, volts[rows].max() * 1e3)
    assert len(x) == 2 * len(np.unique(minutes))  # a minute split between two pages is drawn once


def test_nyquist_panel_shows_the_latest_spectrum_through_its_fit(session):
    spectrum = session.events("plate", "impedance")[-1]["data"]
    measured = session.figure.artists["measured"].get_xydata()
    np.testing.assert_array_equal(measured[:, 0], np.asarray(spectrum["potentiostat_eis_z_real"]) / 1e3)
    np.testing.assert_array_equal(measured[:, 1], -np.asarray(spectrum["potentiostat_eis_z_imag"]) / 1e3)
    fitted = session.figure.artists["fitted"].get_xydata()
    # every measured point lies on the fitted curve drawn for it, within the simulator's noise
    distance = np.abs(measured[:, None, :] - fitted[None, :, :]).sum(axis=2).min(axis=1)
    assert np.all(distance < 0.03 * np.abs(measured).max(axis=1).max()), distance
    sweep_hours = hours(session, spectrum["potentiostat_eis_sweep_start"])
    assert session.figure.panels["nyquist"].get_title() == f"spectrum at {sweep_hours:.2f} h"


def test_resistance_panel_follows_the_fits_on_the_instruments_clock(session):
    fits = [e["data"] for e in session.events("plate", "impedance_fit")]
    # the spectra's own start times: the fit events' times are the computer's, not the session clock
    starts = hours(session, [e["data"]["potentiostat_eis_sweep_start"] for e in session.events("plate", "impedance")])
    for role in ("bulk", "interface"):
        x, y = session.figure.artists[role].get_data()
        np.testing.assert_allclose(x, starts)
        np.testing.assert_array_equal(y, [f[f"impedance_fit_asr_{role}"] for f in fits])


def test_the_short_is_marked_where_the_cell_shorted(session):
    short = hours(session, session.lab.simulators["cell"].state.short_time)
    assert session.run("plate")[-1][1]["reason"].startswith("short circuit at")
    for panel in ("voltage", "resistance"):
        (line,) = [line for line in session.figure.panels[panel].lines if line.get_label() == "short circuit"]
        marked = line.get_xdata()[0]
        # the voltage rule dates the short at the first check that saw the collapse (to the second)
        assert 0 <= (marked - short) * 3600 <= CHECK_INTERVAL + 1, (marked, short)


def test_each_run_redraws_the_same_window_from_its_own_data(session, rows_on_disk):
    figure = LivePlatingFigure()
    shown = {}
    for name, doc in session.docs:
        figure(name, doc)
        if name == "stop" and figure.panels is not None:
            shown[figure.figure] = shown.get(figure.figure, []) + [len(figure.artists["voltage"].get_xdata())]
    rested, plated = (2 * len(np.unique(rows_on_disk(session.run(plan), "_time") // 60)) for plan in ("rest", "plate"))
    assert shown == {figure.figure: [rested, plated]}  # set_temperature and set_pressure draw nothing
    plt.close(figure.figure)


def test_a_live_window_needs_a_display_and_qt(monkeypatch):
    found = {}
    monkeypatch.setattr("importlib.util.find_spec", lambda name: found.get(name))
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    found["PySide6"] = object()
    assert not display_available()  # a Qt binding but no display: a server, a CI runner
    with pytest.raises(LabctlError, match="needs a display"):
        live_plot_callback()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert display_available()
    found.clear()
    assert not display_available()  # a display but no Qt binding
    monkeypatch.setattr("sys.platform", "darwin")
    monkeypatch.delenv("WAYLAND_DISPLAY")
    found["PyQt6"] = object()
    assert display_available()  # macOS and Windows always have a screen
