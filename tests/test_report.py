"""``labctl report``: paper-style figures and an HTML summary of a stored run, checked for content."""

import html

import numpy as np
import pytest
import xarray as xr

from labctl.core.analysis import BULK_INTERFACE, ShortDetector, arrhenius_fit
from labctl.core.analysis.conductivity import BOLTZMANN_EV
from labctl.cli import main
from matplotlib.figure import Figure

from labctl.plots import fit_values, fitted_circuit, nyquist_panel, short_time, technique_of
from labctl.report import arrhenius_figure, conductivity_points, plated_capacity, resistance_figure, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_writes_the_figures_and_a_summary_with_fits_and_stop_reason(plating_run, plate, tmp_path, capsys):
    data_dir, uid = plating_run
    stop, streams = plate.stop, plate.streams
    assert main(["report", uid[:8], "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    page = tmp_path / f"{uid[:8]}-plate.html"
    assert f"report: {page}" in capsys.readouterr().out
    text = page.read_text()
    assert html.escape(stop["reason"]) in text and "time limit reached" in stop["reason"]  # an hour, no short
    fits = streams["impedance_fit"]
    for role in ("bulk", "interface"):
        for value in fit_values(fits, f"asr_{role}"):
            assert f"{value:.4g}" in text
    pngs = sorted(tmp_path.glob("*.png"))
    assert [p.name.removeprefix(uid[:8]) for p in pngs] == ["-plate-drt.png", "-plate-nyquist-plating.png", "-plate-resistances.png", "-plate.png"]
    for png in pngs:
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
        assert f"src='{png.name}'" in text


def test_stored_fits_redraw_as_curves_through_the_measured_spectra(plate):
    streams = plate.streams
    fits, spectra = streams["impedance_fit"], streams["impedance"]
    circuit = fitted_circuit(fits)
    assert circuit is BULK_INTERFACE
    for i in range(len(spectra.time)):
        f = spectra["potentiostat_eis_frequency"].values[i]
        z = spectra["potentiostat_eis_z_real"].values[i] + 1j * spectra["potentiostat_eis_z_imag"].values[i]
        params = [fit_values(fits, name)[i] for name in circuit.parameters]
        model = circuit.impedance(params, f)
        assert np.sqrt(np.mean(np.abs((model - z) / z) ** 2)) < 0.02  # the simulator's noise is 0.5 %


def test_plated_capacity_follows_the_current(plate):
    start, streams = plate.start, plate.streams
    spectra = streams["impedance"]
    times = spectra["potentiostat_eis_sweep_start"].values
    capacity = plated_capacity(streams["potentiostat"], times, start["cell"]["electrode_area"])
    assert capacity[0] == pytest.approx(0, abs=1e-3)  # the first spectrum is taken before plating
    # 0.5 mA/cm^2 for the hour of plating, which the spectra do not interrupt
    assert capacity[-1] == pytest.approx(0.5, rel=0.02)
    assert np.all(np.diff(capacity) > 0)


def test_conductivity_points_from_the_plans_conductivity_stream(stored_run):
    t = np.array([253.15, 273.15, 298.15])
    points = xr.Dataset({"conductivity_temperature": ("time", t), "conductivity_sigma": ("time", [1e-3, 5e-3, 2e-2]),
                         "conductivity_r_bulk": ("time", [1e4, 2e3, 5e2])})
    found = conductivity_points(stored_run({"uid": "x", "time": 0.0}, {}, {"conductivity": points}))
    np.testing.assert_array_equal(found[0], t)
    np.testing.assert_array_equal(found[1], [1e-3, 5e-3, 2e-2])
    # the electronic-conductivity step's stream has no temperatures: no Arrhenius points
    dc = xr.Dataset({"conductivity_sigma": ("time", [1e-9])})
    assert conductivity_points(stored_run({"uid": "x", "time": 0.0}, {}, {"conductivity": dc})) is None


def test_arrhenius_figure_from_arrays(tmp_path):
    t = np.array([253.15, 273.15, 298.15, 323.15, 348.15])
    sigma = 5e3 * np.exp(-0.42 / (BOLTZMANN_EV * t))
    fit = arrhenius_fit(t, sigma)
    path = arrhenius_figure(t, sigma, fit, tmp_path / "arrhenius.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def test_report_of_a_conductivity_run_has_an_arrhenius_fit(stored_run, tmp_path):
    # A conductivity run: one fitted spectrum per temperature, the chamber's temperature beside it.
    t = np.array([263.15, 283.15, 303.15, 323.15, 343.15])
    thickness, area = 1.2e-3, np.pi * 1e-6
    sigma = 5e3 * np.exp(-0.42 / (BOLTZMANN_EV * t))
    r_bulk = thickness / (sigma * area)
    events = np.arange(5.0) * 3600
    fits = xr.Dataset({"impedance_fit_r_bulk": ("time", r_bulk), "impedance_fit_r_bulk_err": ("time", r_bulk * 0.01),
                       "impedance_fit_residual_rms": ("time", np.full(5, 0.004))}, coords={"time": events})
    environment = xr.Dataset({"chamber_temperature": ("time", t)}, coords={"time": events - 60})
    run = stored_run({"uid": "c0ffee00-0000", "plan_name": "conductivity", "time": 0.0,
                     "cell": {"id": "LLZTO-9", "thickness": thickness, "electrode_area": area}},
                    {"exit_status": "success", "reason": "5 temperatures measured"},
                    {"impedance_fit": fits, "environment": environment})
    temperature, measured = conductivity_points(run)
    np.testing.assert_allclose(temperature, t)
    np.testing.assert_allclose(measured, sigma)
    text = write_report(run, tmp_path).read_text()
    assert "0.420 ± 0.000 eV" in text and "5 temperatures measured" in text
    assert "<td>30.0</td><td>" + f"{sigma[2] * 10:.4g}</td>" in text  # mS/cm
    (png,) = tmp_path.glob("*.png")  # no voltage or Nyquist figure for a run without those streams
    assert png.name == "c0ffee00-conductivity-arrhenius.png"
    assert png.read_bytes()[:8] == PNG and f"src='{png.name}'" in text


def test_an_isothermal_run_has_no_arrhenius_points(plate):
    assert conductivity_points(plate) is None


def detector_reason(collapsed_at: float) -> str:
    """The stop reason of a plating run whose voltage collapsed at ``collapsed_at`` (s, whole)."""
    detector = ShortDetector(15.7e-6, hold=60.0)
    assert detector.add_voltage(collapsed_at - 60.0, 0.3) is None
    assert detector.add_voltage(collapsed_at, 0.007) is None
    return detector.add_voltage(collapsed_at + 60.0, 0.007) + "; 0.300 mAh/cm^2 plated in 0.60 h"


def test_short_time_reads_either_rule_of_the_detector():
    assert short_time({"reason": detector_reason(1e9)}) == 1e9
    detector = ShortDetector(15.7e-6)
    assert detector.add_spectrum(1e9, 2000.0) is None
    reason = detector.add_spectrum(1e9 + 900.0, 480.0)
    assert short_time({"reason": reason}) == 1e9 + 900.0  # the spectrum that saw it, not the one before
    assert short_time({"reason": "time limit reached: 1.00 h"}) is None
    assert short_time({}) is None


def test_resistances_mark_the_short_against_time_and_plated_capacity(plate, stored_run, tmp_path):
    # The stored hour did not short: give it the stop reason of a collapse 40 min into the run.
    start, streams = plate.start, plate.streams
    t0, area = start["clock_time"], start["cell"]["electrode_area"]
    shorted = float(np.ceil(t0)) + 2400.0
    run = stored_run(start, {**plate.stop, "reason": detector_reason(shorted)}, streams)
    potentiostat = streams["potentiostat"]
    times = streams["impedance"]["potentiostat_eis_sweep_start"].values
    figure = resistance_figure(streams["impedance_fit"], times, t0, potentiostat, area, short_time(run.stop))
    by_time, by_capacity = (next(line.get_xdata()[0] for line in ax.lines if line.get_label() == "short circuit")
                            for ax in figure.axes)
    assert by_time == pytest.approx((shorted - t0) / 3600)
    # 0.5 mA/cm^2 from the first row with current on (plating starts after the first spectrum)
    current = potentiostat["potentiostat_I"].values
    plating_since = potentiostat["potentiostat_time"].values[np.argmax(current != 0)]
    assert by_capacity == pytest.approx(0.5 * (shorted - plating_since) / 3600, rel=0.02)
    text = write_report(run, tmp_path).read_text()
    assert html.escape(run.stop["reason"]) in text
    assert (tmp_path / f"{start['uid'][:8]}-plate-resistances.png").stat().st_size > 10_000


def _fits_dataset(asr_bulk, raw_r1, r_low, area):
    n = len(asr_bulk)
    data = {"asr_bulk": asr_bulk, "asr_bulk_err": np.asarray(asr_bulk) * 0.01, "R1": raw_r1,
            "asr_interface": np.full(n, 500.0), "asr_interface_err": np.full(n, 5.0), "R2": np.full(n, 500.0 / (area * 1e4)),
            "circuit": np.zeros(n), "r_low_frequency": r_low}
    return xr.Dataset({f"impedance_fit_{k}": ("time", np.asarray(v, dtype=float)) for k, v in data.items()},
                      coords={"time": np.arange(n, dtype=float)})


def test_undetermined_values_are_hollow_and_do_not_stretch_the_axes_and_the_short_is_labelled():
    area, n = np.pi * 1e-6, 8
    asr_bulk = np.full(n, 100.0)
    asr_bulk[2] = np.nan  # not determined; its raw estimate is absurd
    raw_r1 = asr_bulk / (area * 1e4)
    raw_r1[2] = 1e12
    times = np.arange(n) * 900.0
    figure = resistance_figure(_fits_dataset(asr_bulk, raw_r1, np.full(n, 480.0), area), times, 0.0, None, area,
                               short=times[6])
    (ax,) = figure.axes
    hollow = [line for line in ax.lines if line.get_label() == "R$_{bulk}$, not determined"]
    assert len(hollow) == 1 and hollow[0].get_markerfacecolor() == "none"
    assert ax.get_ylim()[1] < 1e5  # the 1e12 estimate did not stretch the axis
    (short,) = [line for line in ax.lines if line.get_label() == "R$_{short}$ (after the short)"]
    np.testing.assert_allclose(short.get_ydata(), 480.0 * area * 1e4)  # the short's resistance, not R_bulk
    bulk = [c for c in ax.containers if c.get_label() == "R$_{bulk}$"][0]
    assert len(bulk.lines[0].get_xdata()) == 5  # 8 spectra: 1 undetermined, 2 after the short


def test_peis_spectra_are_titled_peis():
    class Run:
        def __init__(self, plan):
            self.start = {"plan_name": plan}
    assert technique_of(Run("peis")) == technique_of(Run("ionic_conductivity_arrhenius")) == "PEIS"
    assert technique_of(Run("plate")) == "GEIS"
    fig = Figure()
    ax = fig.subplots()
    spectra = xr.Dataset({f"potentiostat_eis_{k}": (("time", "f"), v) for k, v in {
        "z_real": np.ones((1, 3)), "z_imag": -np.ones((1, 3)), "frequency": np.array([[1e3, 1e2, 1e1]])}.items()})
    spectra["potentiostat_eis_sweep_start"] = ("time", np.zeros(1))
    nyquist_panel(fig, ax, spectra, 0.0, technique="PEIS")
    assert ax.get_title() == "PEIS spectra"
