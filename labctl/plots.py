"""Figures and summaries of stored runs (``labctl show``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, never a window: labctl show runs headless too
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from labctl.analysis import BLOCKING, BULK_INTERFACE, SHORTED  # noqa: E402

POTENTIOSTAT, IMPEDANCE, IMPEDANCE_FIT = "potentiostat", "impedance", "impedance_fit"
FIT_PREFIX = IMPEDANCE_FIT + "_"


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
    """Write a PNG of voltage vs time (GEIS moments marked) and the Nyquist plots coloured by time,
    each spectrum with its fitted curve when the run has an ``impedance_fit`` stream."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = streams(run)
    # a panel per stream the run has: a run of spectra only (conductivity) gets no voltage panel
    has_v, has_z = POTENTIOSTAT in names, IMPEDANCE in names
    panels = max(has_v + has_z, 1)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8), constrained_layout=True, squeeze=False)
    ax_v, ax_z = axes[0][0], axes[0][-1]
    t0 = run.start.get("clock_time", run.start["time"])  # data times are on the session clock
    if has_v:
        _voltage_panel(ax_v, read_stream(run, POTENTIOSTAT), t0)
    if has_z:
        spectra = read_stream(run, IMPEDANCE)
        if has_v:
            _mark_geis(ax_v, spectra, t0)
        fits = read_stream(run, IMPEDANCE_FIT) if IMPEDANCE_FIT in names else None
        nyquist_panel(fig, ax_z, spectra, t0, fits)
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


def nyquist_panel(fig, ax, spectra, t0: float, fits=None, norm=None) -> None:
    """Draw spectra (an ``impedance`` Dataset) coloured by hours since ``t0``, with their fitted
    curves when ``fits`` (the matching ``impedance_fit`` Dataset) is given; ``norm`` sets the colours'
    time scale, to match another panel."""
    hours = (np.asarray(spectra["potentiostat_eis_sweep_start"]) - t0) / 3600
    z_real = np.asarray(spectra["potentiostat_eis_z_real"])
    z_imag = np.asarray(spectra["potentiostat_eis_z_imag"])
    norm = norm or matplotlib.colors.Normalize(hours.min(), max(hours.max(), hours.min() + 1e-9))
    fitted = _fitted_curves(spectra, fits)
    circuit = fitted_circuit(fits) if fitted is not None else None
    for i, (re, im, h) in enumerate(zip(z_real, z_imag, hours)):
        colour = plt.cm.viridis(norm(h))
        if fitted is None:
            ax.plot(re / 1e3, -im / 1e3, ".-", ms=3, lw=0.8, color=colour)
        else:  # measured points, fitted model as the line through them, as in the paper
            ax.plot(re / 1e3, -im / 1e3, "o", ms=2.5, mfc="none", mew=0.6, color=colour)
            ax.plot(fitted[i].real / 1e3, -fitted[i].imag / 1e3, "-", lw=0.9, color=colour)
    if fitted is not None:
        ax.plot([], [], "o", ms=3, mfc="none", color="grey", label="measured")
        ax.plot([], [], "-", color="grey", label=f"fit {circuit.name}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("Z' / kohm")
    ax.set_ylabel("-Z'' / kohm")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("GEIS spectra")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="time / h")


def _fitted_curves(spectra, fits):
    """Return each spectrum's fitted Z on a fine grid over its own frequencies, or None without fits."""
    if fits is None or len(fits.time) != len(spectra.time) or fitted_circuit(fits) is None:
        return None
    circuit = fitted_circuit(fits)
    f = np.asarray(spectra["potentiostat_eis_frequency"])
    params = np.column_stack([fit_values(fits, name) for name in circuit.parameters])
    return np.array([circuit.impedance(p, np.geomspace(fi.max(), fi.min(), 200)) for p, fi in zip(params, f)])


def fit_values(fits, name: str) -> np.ndarray:
    """Return one fitted quantity (``"asr_bulk"``, ``"R1"``) of an ``impedance_fit`` Dataset."""
    return np.asarray(fits[FIT_PREFIX + name], dtype=float)


def fitted_circuit(fits):
    """Return the circuit stored fits are of, told apart by the parameters they hold, or None."""
    names = {key.removeprefix(FIT_PREFIX) for key in fits.data_vars}
    for circuit in (BULK_INTERFACE, BLOCKING, SHORTED):  # the richest circuit first
        if set(circuit.parameters) <= names:
            return circuit
    return None
