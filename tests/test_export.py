"""``labctl export`` round trips, and EC-Lab ``.mpr`` data read into the stored layout and the fitter."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from labctl.analysis import BULK_INTERFACE, fit_spectrum
from labctl.cli import main
from labctl.eclab import from_eclab, read_mpr
from labctl.export import export_netcdf, read_netcdf


def test_csv_export_round_trips_every_stream(plating_run, plate, tmp_path):
    data_dir, uid = plating_run
    streams = plate.streams
    assert main(["export", uid[:8], "--format", "csv", "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(f"{uid[:8]}-plate-{name}.csv" for name in streams)
    for name, ds in streams.items():
        table = pd.read_csv(tmp_path / f"{uid[:8]}-plate-{name}.csv", index_col=list(ds.dims))
        back = xr.Dataset.from_dataframe(table)
        for key, values in ds.data_vars.items():
            # a spectrum's scalars come back repeated over its frequencies
            expected = values.values.reshape(values.shape + (1,) * (back[key].ndim - values.ndim))
            np.testing.assert_allclose(back[key].values, np.broadcast_to(expected, back[key].shape),
                                       rtol=1e-15, err_msg=f"{name}.{key}")
    # the spectra are written long: one row per spectrum and frequency
    assert len(pd.read_csv(tmp_path / f"{uid[:8]}-plate-impedance.csv")) == streams["impedance"]["potentiostat_eis_frequency"].size


def test_netcdf_export_round_trips_streams_and_documents(plate, tmp_path):
    start, stop, streams = plate.start, plate.stop, plate.streams
    uid = start["uid"]
    back_start, back_stop, back = read_netcdf(export_netcdf(plate, tmp_path))
    assert back_start["uid"] == uid and back_start["cell"]["electrode_area"] == start["cell"]["electrode_area"]
    assert back_stop["reason"] == stop["reason"]
    assert sorted(back) == sorted(streams)
    for name, ds in streams.items():
        xr.testing.assert_equal(back[name], ds)


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
