"""``labctl export`` round trips, and EC-Lab ``.mpr`` data read into the stored layout and the fitter."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from labctl.core.analysis import BULK_INTERFACE, fit_spectrum
from labctl.cli import main
from labctl.eclab import from_eclab, read_mpr
from labctl.export import export_netcdf, read_csv, read_netcdf, stream_dataset


def test_csv_export_round_trips_every_stream_with_units(plating_run, plate, tmp_path):
    data_dir, uid = plating_run
    streams = {name: stream_dataset(plate[name]) for name in plate}
    assert main(["export", uid[:8], "--format", "csv", "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(f"{uid[:8]}-plate-{name}.csv" for name in streams)
    for name, ds in streams.items():
        back = read_csv(tmp_path / f"{uid[:8]}-plate-{name}.csv")
        for key, values in ds.data_vars.items():
            assert back[key].attrs.get("units") == values.attrs.get("units"), f"{name}.{key}"
            if values.dtype.kind in "OUS":  # the result's text
                assert set(np.ravel(back[key].values)) == set(np.ravel(values.values))
                continue
            # a spectrum's scalars come back repeated over its frequencies
            expected = values.values.reshape(values.shape + (1,) * (back[key].ndim - values.ndim))
            np.testing.assert_allclose(back[key].values, np.broadcast_to(expected, back[key].shape),
                                       rtol=1e-15, err_msg=f"{name}.{key}")
    header = pd.read_csv(tmp_path / f"{uid[:8]}-plate-potentiostat.csv", nrows=0).columns
    assert list(header) == ["time / s", "potentiostat_time / s", "potentiostat_Ewe / V", "potentiostat_I / A",
                            "potentiostat_charge / C"]
    assert "impedance_fit_r_bulk / ohm" in pd.read_csv(tmp_path / f"{uid[:8]}-plate-impedance_fit.csv", nrows=0)
    # the spectra are written long: one row per spectrum and frequency
    assert len(pd.read_csv(tmp_path / f"{uid[:8]}-plate-impedance.csv")) == streams["impedance"]["potentiostat_eis_frequency"].size


def test_every_stream_is_on_the_session_clock_and_the_potentiostat_time_is_time(plate):
    """One clock: the rows' own times, the environment's and the fits' event times, all session time."""
    streams = {name: stream_dataset(plate[name]) for name in plate}
    rows = streams["potentiostat"]
    np.testing.assert_array_equal(rows["time"].values, rows["potentiostat_time"].values)
    first, last = rows["time"].values[[0, -1]]
    assert last - first == pytest.approx(3600, abs=60)  # an hour of plating at 1 s, not 3600 row numbers
    for name in ("environment", "impedance", "impedance_fit", "primary", "result"):
        times = streams[name]["time"].values
        assert first - 600 <= times.min() and times.max() <= last + 600, name  # within the plating hour
    np.testing.assert_allclose(streams["impedance_fit"]["time"], streams["impedance"]["potentiostat_eis_sweep_start"],
                               atol=1e3)  # each fit stored when its sweep ended
    assert plate.start["time"] <= first and plate.stop["time"] >= last


def test_netcdf_export_opens_with_plain_xarray_and_round_trips(plate, tmp_path):
    start, stop = plate.start, plate.stop
    streams = {name: stream_dataset(plate[name]) for name in plate}
    uid = start["uid"]
    path = export_netcdf(plate, tmp_path)
    back_start, back_stop, back = read_netcdf(path)
    assert back_start["uid"] == uid and back_start["cell"]["electrode_area"] == start["cell"]["electrode_area"]
    assert back_stop["reason"] == stop["reason"]
    assert sorted(back) == sorted(streams)
    for name, ds in streams.items():
        xr.testing.assert_identical(back[name], ds)
    with xr.open_dataset(path, group="potentiostat") as rows:  # as the README says, no engine named
        assert rows["potentiostat_Ewe"].attrs["units"] == "V" and rows["time"].attrs["units"] == "s"
    with xr.open_dataset(path) as root:
        assert root.attrs["streams"].split() == list(streams)


def test_plan_arguments_are_recorded_as_written_beside_si_values_and_their_units(plate):
    start = plate.start
    assert start["plan_args"]["current_density"] == pytest.approx(5.0)
    assert start["plan_args_units"]["current_density"] == "A/m^2"
    assert start["plan_args_as_written"]["current_density"] == "0.5 mA/cm^2"
    assert start["plan_args_units"]["geis_interval"] == "s" and start["plan_args_as_written"]["geis_interval"] == "20 min"
    assert start["plan_args_units"]["short_drop"] == "1"  # a fraction


# ---- EC-Lab files -----------------------------------------------------------------------------------
TRUE = [12.0, 3000.0, 1e-11, 0.95, 16000.0, 4e-8, 0.85]  # R0, R1, Q1, a1, R2, Q2, a2 of a Li/LLZTO/Li cell


def eclab_columns():
    """Return EC-Lab-named columns: 5 s of galvanostatic plating, then a GEIS sweep (high to low)."""
    f = np.geomspace(7e6, 1.0, 61)
    z = BULK_INTERFACE.impedance(TRUE, f)
    n, m = 5, f.size
    return {
        "time/s": np.r_[np.arange(n, dtype=float), n + np.arange(m) * 0.5],
        "Ewe/V": np.r_[np.full(n, -0.3), np.full(m, -0.31)],
        "I/mA": np.r_[np.full(n, -0.0157), np.full(m, -0.0157)],
        "(Q-Qo)/mA.h": np.r_[-0.0157 * np.arange(1, n + 1) / 3600, np.full(m, -0.0157 * n / 3600)],
        "freq/Hz": np.r_[np.zeros(n), f],
        "Re(Z)/Ohm": np.r_[np.zeros(n), z.real],
        "-Im(Z)/Ohm": np.r_[np.zeros(n), -z.imag],
    }


def check_streams(streams):
    pot, eis = streams["potentiostat"], streams["impedance"]
    np.testing.assert_allclose(pot["potentiostat_I"], -1.57e-5, rtol=1e-6)  # mA -> A
    np.testing.assert_allclose(pot["potentiostat_charge"][-1], -1.57e-5 * 5, rtol=1e-6)  # mAh -> C
    assert eis["potentiostat_eis_frequency"].shape == (1, 61)
    assert eis["potentiostat_eis_sweep_start"].values[0] == 5.0
    z = eis["potentiostat_eis_z_real"].values[0] + 1j * eis["potentiostat_eis_z_imag"].values[0]
    fit = fit_spectrum(eis["potentiostat_eis_frequency"].values[0], z)
    assert fit.value("bulk") == pytest.approx(TRUE[1], rel=1e-3)
    assert fit.value("interface") == pytest.approx(TRUE[4], rel=1e-3)


def test_eclab_columns_map_to_the_stored_layout_and_fit():
    check_streams(from_eclab(eclab_columns()))


def test_spectra_split_where_the_frequency_rises_again():
    columns = eclab_columns()
    twice = {key: np.r_[values, values[5:]] for key, values in columns.items()}
    twice["time/s"][66:] += 100
    eis = from_eclab(twice)["impedance"]
    assert eis["potentiostat_eis_frequency"].shape == (2, 61)
    np.testing.assert_array_equal(eis["potentiostat_eis_sweep_start"], [5.0, 105.0])


# Column ids and types of the .mpr data module, as galvani's BioLogic.VMPdata_colID_dtype_map reads them.
MPR_COLUMNS = {"time/s": (4, "<f8"), "Ewe/V": (6, "<f4"), "I/mA": (11, "<f8"), "(Q-Qo)/mA.h": (13, "<f8"),
               "freq/Hz": (32, "<f4"), "Re(Z)/Ohm": (37, "<f4"), "-Im(Z)/Ohm": (38, "<f4")}


def write_mpr(path, columns):
    """Write ``columns`` as a minimal EC-Lab .mpr (settings and version-0 data modules)."""
    def module(short: bytes, data: bytes) -> bytes:
        header = np.array([(short.ljust(10), b"".ljust(25), len(data), 0, b"01/02/24")],
                          dtype=[("s", "S10"), ("l", "S25"), ("n", "<u4"), ("v", "<u4"), ("d", "S8")])
        return b"MODULE" + header.tobytes() + data

    dtype = np.dtype([(name, MPR_COLUMNS[name][1]) for name in columns])
    rows = np.zeros(len(columns["time/s"]), dtype=dtype)
    for name, values in columns.items():
        rows[name] = values
    ids = bytes(MPR_COLUMNS[name][0] for name in columns)
    head = np.uint32(rows.size).tobytes() + bytes([len(ids)]) + ids
    data = head.ljust(100, b"\0") + rows.tobytes()
    magic = b"BIO-LOGIC MODULAR FILE\x1a".ljust(48) + b"\0\0\0\0"
    path.write_bytes(magic + module(b"VMP Set", b"\0" * 16) + module(b"VMP data", data))


def test_read_mpr_through_galvani(tmp_path):
    pytest.importorskip("galvani")
    write_mpr(tmp_path / "geis.mpr", eclab_columns())
    check_streams(read_mpr(tmp_path / "geis.mpr"))
