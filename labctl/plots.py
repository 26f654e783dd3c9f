"""Figures and summaries of stored runs (``labctl show``).

Figures are drawn on :class:`matplotlib.figure.Figure` objects and saved, never through pyplot,
so writing a PNG needs no backend and leaves a session's live windows (``labctl.liveplot``) alone.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from labctl.fits import FIT_PREFIX, IMPEDANCE_FIT, circuit_of, fit_values, fitted_circuit, row_circuit  # noqa: F401 - liveplot and report import them from here

POTENTIOSTAT, IMPEDANCE = "potentiostat", "impedance"
VIRIDIS = matplotlib.colormaps["viridis"]
# How labctl.core.analysis.ShortDetector words a short in the stop reason: "short circuit at <ISO time>..."
SHORT_REASON = re.compile(r"short circuit at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?)")


def streams(run) -> list[str]:
    """The names of a run's streams."""
    return list(run)


def read_stream(run, name: str):
    """Return a stream of a run as an xarray Dataset."""
    return run[name].read()


def spectrum_field(spectra, field: str) -> np.ndarray:
    """Return a field (``frequency``, ``z_real``...) of an ``impedance`` Dataset, whichever device measured
    it: the SP-200 (``potentiostat_eis_``) or the MTZ-35 (``impedance_analyser_``)."""
    for prefix in ("potentiostat_eis_", "impedance_analyser_"):
        if prefix + field in spectra:
            return np.asarray(spectra[prefix + field])
    raise KeyError(f"the impedance stream has no {field}")


def run_summary(run) -> str:
    """Return a short text summary: plan, cell, times, how it ended, what it holds."""
    start, stop = run.start, run.stop or {}
    cell = start.get("cell", {})
    lines = [
        f"run {start['uid']}",
        f"  plan      {start.get('plan_name')}  (step {start['step_index'] + 1 if 'step_index' in start else '?'} of sequence {start.get('sequence_id', '-')})",
        f"  cell      {cell.get('id', '-')} ({', '.join(filter(None, (cell.get('kind', '-'), cell.get('surface'))))})",
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
    fig = Figure(figsize=(6 * panels, 4.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)
    ax_v, ax_z = axes[0][0], axes[0][-1]
    t0 = run.start.get("clock_time", run.start["time"])  # data times are on the session clock
    if has_v:
        _voltage_panel(ax_v, read_stream(run, POTENTIOSTAT), t0)
        short = short_time(run.stop or {})
        if short is not None:
            mark_short(ax_v, (short - t0) / 3600)
    if has_z:
        spectra = read_stream(run, IMPEDANCE)
        if has_v:
            _mark_geis(ax_v, spectra, t0)
        fits = read_stream(run, IMPEDANCE_FIT) if IMPEDANCE_FIT in names else None
        nyquist_panel(fig, ax_z, spectra, t0, fits, technique=technique_of(run))
    fig.suptitle(f"{run.start.get('plan_name')} — cell {run.start.get('cell', {}).get('id', '')} — {run.start['uid'][:8]}")
    path = out / f"{run.start['uid'][:8]}-{run.start.get('plan_name')}.png"
    fig.savefig(path, dpi=110)
    return path


# Plans whose spectra are potentiostatic (at open circuit); the plating and cycling plans' are GEIS.
PEIS_PLANS = ("peis", "ionic_conductivity_arrhenius")


def technique_of(run) -> str:
    """Return "PEIS" or "GEIS": how the run's spectra were measured, from its plan."""
    return "PEIS" if run.start.get("plan_name") in PEIS_PLANS else "GEIS"


def _voltage_panel(ax, data, t0: float) -> None:
    hours = (np.asarray(data["potentiostat_time"]) - t0) / 3600
    ax.plot(hours, np.asarray(data["potentiostat_Ewe"]) * 1e3, lw=0.8, color="k")
    ax.set_xlabel("time / h")
    ax.set_ylabel("Ewe - Ece / mV")
    ax.set_title("voltage")


def _mark_geis(ax, spectra, t0: float) -> None:
    hours = (np.asarray(spectra["potentiostat_eis_sweep_start"]) - t0) / 3600
    colours = VIRIDIS(np.linspace(0, 1, len(hours)))
    ax.scatter(hours, np.asarray(spectra["potentiostat_eis_ewe_dc"]) * 1e3, c=colours, s=25, zorder=3, label="GEIS")
    ax.legend(loc="best")


def nyquist_panel(fig, ax, spectra, t0: float, fits=None, norm=None, technique: str = "GEIS") -> None:
    """Draw spectra (an ``impedance`` Dataset) coloured by hours since ``t0``, with their fitted
    curves when ``fits`` (the matching ``impedance_fit`` Dataset) is given; ``norm`` sets the colours'
    time scale, to match another panel; ``technique`` ("GEIS", "PEIS") titles it."""
    hours = (spectrum_field(spectra, "sweep_start") - t0) / 3600
    z_real = spectrum_field(spectra, "z_real")
    z_imag = spectrum_field(spectra, "z_imag")
    norm = norm or matplotlib.colors.Normalize(hours.min(), max(hours.max(), hours.min() + 1e-9))
    fitted = _fitted_curves(spectra, fits)
    circuit = fitted_circuit(fits) if fitted is not None else None
    for i, (real, imag, h) in enumerate(zip(z_real, z_imag, hours)):
        colour = VIRIDIS(norm(h))
        if fitted is None:
            ax.plot(real / 1e3, -imag / 1e3, ".-", ms=3, lw=0.8, color=colour)
        else:  # measured points, fitted model as the line through them, as in the paper
            ax.plot(real / 1e3, -imag / 1e3, "o", ms=2.5, mfc="none", mew=0.6, color=colour)
            ax.plot(fitted[i].real / 1e3, -fitted[i].imag / 1e3, "-", lw=0.9, color=colour)
    if fitted is not None:
        ax.plot([], [], "o", ms=3, mfc="none", color="grey", label="measured")
        ax.plot([], [], "-", color="grey", label="fit" if FIT_PREFIX + "circuit" in fits else f"fit {circuit.name}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("Z' / kohm")
    ax.set_ylabel("-Z'' / kohm")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{technique} spectra")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="time / h")


def _fitted_curves(spectra, fits):
    """Return each spectrum's fitted Z on a fine grid over its own frequencies, or None without fits."""
    if fits is None or len(fits.time) != len(spectra.time) or fitted_circuit(fits) is None:
        return None
    f = spectrum_field(spectra, "frequency")
    curves = []
    for i, fi in enumerate(f):
        circuit = row_circuit(fits, i)
        params = [fit_values(fits, name)[i] for name in circuit.parameters]
        curves.append(circuit.impedance(params, np.geomspace(fi.max(), fi.min(), 200)))
    return np.array(curves)


def short_time(stop: dict) -> float | None:
    """Return when a run's cell short-circuited, s on the session clock, or None if it did not.

    Read from the stop reason the plating plans record (:class:`labctl.core.analysis.ShortDetector`'s
    ``"short circuit at 2024-01-17T03:12:45+00:00..."``, to the second): when the voltage
    collapsed, or the spectrum at which the impedance had dropped.
    """
    found = SHORT_REASON.search(stop.get("reason") or "")
    return None if found is None else datetime.fromisoformat(found.group(1)).timestamp()


def mark_short(ax, x: float) -> None:
    """Draw the short circuit as a labelled vertical line at ``x`` (in the axes' own units)."""
    ax.axvline(x, color="0.25", ls="--", lw=1, label="short circuit", zorder=1)
