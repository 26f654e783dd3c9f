"""Figures and summaries of stored runs (``labctl show``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, never a window: labctl show runs headless too
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

POTENTIOSTAT, IMPEDANCE = "potentiostat", "impedance"


def streams(run) -> list[str]:
    return list(run)


def read_stream(run, name: str):
    """Return a stream of a run as an xarray Dataset."""
    return run[name].read()


def run_summary(run) -> str:
    """Return a short text summary: plan, cell, times, how it ended, what it holds."""
    start, stop = run.start, run.stop or {}
    cell = start.get("cell", {})
    lines = [
        f"run {start['uid']}",
        f"  plan      {start.get('plan_name')}  (step {start['step_index'] + 1 if 'step_index' in start else '?'} of sequence {start.get('sequence_id', '-')})",
        f"  cell      {cell.get('id', '-')} ({cell.get('kind', '-')}, {cell.get('surface', '-')})",
        f"  exit      {stop.get('exit_status', 'still open')}: {stop.get('reason', '')}",
    ]
    for name in streams(run):
        lines.append(f"  stream    {name}: {len(read_stream(run, name).time)} rows")
    return "\n".join(lines)


def run_figure(run, out: Path) -> Path:
    """Write a PNG of voltage vs time (GEIS moments marked) and the Nyquist plots coloured by time."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = streams(run)
    fig, (ax_v, ax_z) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    t0 = run.start.get("clock_time", run.start["time"])  # data times are on the session clock
    if POTENTIOSTAT in names:
        _voltage_panel(ax_v, read_stream(run, POTENTIOSTAT), t0)
    spectra = read_stream(run, IMPEDANCE) if IMPEDANCE in names else None
    if spectra is not None:
        _mark_geis(ax_v, spectra, t0)
        _nyquist_panel(fig, ax_z, spectra, t0)
    fig.suptitle(f"{run.start.get('plan_name')} — cell {run.start.get('cell', {}).get('id', '')} — {run.start['uid'][:8]}")
    path = out / f"{run.start['uid'][:8]}-{run.start.get('plan_name')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _voltage_panel(ax, data, t0: float) -> None:
    hours = (np.asarray(data["potentiostat_time"]) - t0) / 3600
    ax.plot(hours, np.asarray(data["potentiostat_Ewe"]) * 1e3, lw=0.8, color="k")
    ax.set_xlabel("time / h")
    ax.set_ylabel("Ewe - Ece / mV")
    ax.set_title("voltage")


def _mark_geis(ax, spectra, t0: float) -> None:
    hours = (np.asarray(spectra["potentiostat_eis_sweep_start"]) - t0) / 3600
    colours = plt.cm.viridis(np.linspace(0, 1, len(hours)))
    ax.scatter(hours, np.asarray(spectra["potentiostat_eis_ewe_dc"]) * 1e3, c=colours, s=25, zorder=3, label="GEIS")
    ax.legend(loc="best")


def _nyquist_panel(fig, ax, spectra, t0: float) -> None:
    hours = (np.asarray(spectra["potentiostat_eis_sweep_start"]) - t0) / 3600
    z_real = np.asarray(spectra["potentiostat_eis_z_real"])
    z_imag = np.asarray(spectra["potentiostat_eis_z_imag"])
    norm = matplotlib.colors.Normalize(hours.min(), max(hours.max(), hours.min() + 1e-9))
    for re, im, h in zip(z_real, z_imag, hours):
        ax.plot(re / 1e3, -im / 1e3, ".-", ms=3, lw=0.8, color=plt.cm.viridis(norm(h)))
    ax.set_xlabel("Z' / kohm")
    ax.set_ylabel("-Z'' / kohm")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("GEIS spectra")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="time / h")
