"""Paper-style figures and a short HTML summary of a stored run (``labctl report``).

The figures follow the seed paper's figure 1a-b: voltage against time with each GEIS spectrum
marked by a coloured dot, the spectra as Nyquist plots in the same colours with their fitted
equivalent circuits, and the bulk and interface resistances (ohm cm^2, one-sigma error bars) against
time and plated capacity, the short circuit marked when the run ended on one. Conductivity runs
(fitted bulk resistances at several temperatures) also get an Arrhenius plot. Everything is read
from the run's streams; a stream a run lacks is skipped.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from labctl.core.analysis import ArrheniusFit, arrhenius_fit, ionic_conductivity
from labctl.plots import (
    FIT_PREFIX, IMPEDANCE, IMPEDANCE_FIT, POTENTIOSTAT, fit_values, mark_short, nyquist_panel, read_stream, row_circuit,
    run_figure, short_time, spectrum_field, streams,
)

COULOMB_PER_MAH = 3.6
M2_TO_CM2 = 1e4
# A fitted resistance whose one-sigma error exceeds this fraction of its value is not determined by
# the spectrum (e.g. the interface arc after a short): drawn hollow, without an error bar.
ILL_DETERMINED = 0.5
CONDUCTIVITY = "conductivity"  # the ionic-conductivity plan's stream of (T, sigma) points


def plated_capacity(potentiostat, times, area: float) -> np.ndarray:
    """Return the capacity passed (mAh/cm^2) by each of ``times``, from the cumulative charge."""
    charge = np.abs(np.asarray(potentiostat["potentiostat_charge"], dtype=float))
    coulombs = np.interp(times, np.asarray(potentiostat["potentiostat_time"], dtype=float), charge)
    return coulombs / COULOMB_PER_MAH / (area * M2_TO_CM2)


# ---- figures ------------------------------------------------------------------------------------
def nyquist_zoom_figure(spectra, fits, t0: float, path: Path) -> Path:
    """Write the Nyquist plots of the spectra taken while plating, without the one before it.

    The cell's first spectrum, before any lithium is plated, has an interface arc several times
    larger than all later ones (the lithiophobic contact): on one scale it hides how the bulk arc
    shrinks. Colours are on the same time scale as in the full figure.
    """
    hours = (spectrum_field(spectra, "sweep_start").astype(float) - t0) / 3600
    norm = matplotlib.colors.Normalize(hours.min(), max(hours.max(), hours.min() + 1e-9))
    later = slice(1, None)
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    ax = fig.subplots()
    nyquist_panel(fig, ax, spectra.isel(time=later), t0, None if fits is None else fits.isel(time=later), norm)
    ax.set_title("GEIS spectra while plating (first, pre-plating spectrum left out)")
    return _save(fig, path)


def resistance_figure(fits, times, t0: float, potentiostat, area: float, short: float | None = None) -> Figure:
    """Return a figure of R_bulk and R_int (ohm cm^2, one-sigma bars) against time and plated capacity.

    Parameters
    ----------
    fits : xarray.Dataset
        The run's ``impedance_fit`` stream.
    times : array_like
        The spectra's start times on the run's clock, s (the fits' own event times are the
        computer's, not the instrument's).
    t0 : float
        The run's start on that clock, s.
    potentiostat : xarray.Dataset or None
        The ``potentiostat`` stream, for the plated capacity (no capacity panel without it).
    area : float
        Electrode area, m^2.
    short : float, optional
        When the cell short-circuited, s on the run's clock (:func:`labctl.plots.short_time`):
        marked on both panels.
    """
    times = np.asarray(times, dtype=float)
    axes_x = [(lambda t: (t - t0) / 3600, "time / h")]
    if potentiostat is not None:
        axes_x.append((lambda t: plated_capacity(potentiostat, t, area), "plated capacity / mAh cm$^{-2}$"))
    fig = Figure(figsize=(5.5 * len(axes_x), 4.2), layout="constrained")
    axes = fig.subplots(1, len(axes_x), squeeze=False)
    after = np.zeros(times.size, dtype=bool) if short is None else times >= short
    for ax, (to_x, label) in zip(axes[0], axes_x):
        x = to_x(times)
        hollow = []
        for role, colour in (("bulk", "tab:blue"), ("interface", "tab:red")):
            if FIT_PREFIX + f"asr_{role}" in fits:
                name = "R$_{bulk}$" if role == "bulk" else "R$_{int}$"
                value, error = fit_values(fits, f"asr_{role}"), fit_values(fits, f"asr_{role}_err")
                raw = _raw_asr(fits, role, area)
                value, raw = np.where(after, np.nan, value), np.where(after, np.nan, raw)  # the short's, not the cell's
                hollow.append(_resistance_points(ax, x, value, error, raw, colour, name))
        if after.any():  # after the short the cell's resistance is the short's
            short_asr = _short_asr(fits, area)
            ax.plot(x[after], short_asr[after], "s-", ms=4, color="0.2", label="R$_{short}$ (after the short)")
        for points in hollow:  # drawn last, inside the limits the determined values set
            _draw_hollow(ax, *points)
        if short is not None:
            mark_short(ax, float(to_x(np.array([short]))[0]))
        ax.set_xlabel(label)
        ax.set_ylabel("area-specific resistance / Ω cm$^2$")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle("fitted resistances")
    return fig


def _resistance_points(ax, x, value, error, raw, colour: str, label: str):
    """Draw the determined values with error bars; return the undetermined ones, drawn later hollow.

    A value is determined when stored as a number (fits say nan otherwise) with a one-sigma error
    within ILL_DETERMINED of it (runs stored before fits said so)."""
    good = np.isfinite(value) & np.isfinite(error) & (error <= ILL_DETERMINED * np.abs(value))
    if np.any(good):
        ax.errorbar(x[good], value[good], yerr=error[good], fmt="o-", ms=4, capsize=2, color=colour, label=label)
    shown = np.where(np.isfinite(value), value, raw)
    return x[~good & np.isfinite(shown)], shown[~good & np.isfinite(shown)], colour, label


def _draw_hollow(ax, x, y, colour: str, label: str) -> None:
    """Draw undetermined values hollow, pinned to the axes' limits so they do not stretch them."""
    if x.size == 0:
        return
    low, high = ax.dataLim.intervaly  # of the determined values (and the short's) drawn so far
    if ax.has_data() and np.isfinite([low, high]).all() and low > 0:
        low, high = low / 1.5, high * 1.5  # a margin on the log axis
        ax.set_ylim(low, high)
        ax.autoscale(False)
        y = np.clip(y, low, high)
    ax.plot(x, y, "o", mfc="none", color=colour, label=f"{label}, not determined")


def _raw_asr(fits, role: str, area: float) -> np.ndarray:
    """Return each fit's raw estimate of a role (ohm cm^2), determined or not, from its parameters."""
    out = np.full(len(fits.time), np.nan)
    for i in range(len(fits.time)):
        circuit = row_circuit(fits, i)
        name = circuit.roles.get(role)
        if name is not None and FIT_PREFIX + name in fits:
            out[i] = fit_values(fits, name)[i] * area * M2_TO_CM2
    return out


def _short_asr(fits, area: float) -> np.ndarray:
    """Return the short's resistance (ohm cm^2): fitted when stored, else the low-frequency Z'."""
    if FIT_PREFIX + "asr_short" in fits and np.any(np.isfinite(fit_values(fits, "asr_short"))):
        return fit_values(fits, "asr_short")
    if FIT_PREFIX + "r_low_frequency" in fits:
        return fit_values(fits, "r_low_frequency") * area * M2_TO_CM2
    return np.full(len(fits.time), np.nan)


def drt_figure(fits, t0: float, path: Path) -> Path:
    """Write each spectrum's distribution of relaxation times, g(ln tau) against tau, coloured by time."""
    tau = np.asarray(fits[FIT_PREFIX + "drt_tau"], dtype=float)
    resistance = np.asarray(fits[FIT_PREFIX + "drt_resistance"], dtype=float)
    hours = (np.asarray(fits.time, dtype=float) - t0) / 3600
    norm = matplotlib.colors.Normalize(hours.min(), max(hours.max(), hours.min() + 1e-9))
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for t, r, h in zip(tau, resistance, hours):
        ax.semilogx(t, r / np.log(t[1] / t[0]), "-", lw=0.9, color=matplotlib.cm.viridis(norm(h)))
    ax.set_xlabel("τ / s")
    ax.set_ylabel("γ(ln τ) / Ω")
    ax.set_title("distribution of relaxation times (Tikhonov, λ by GCV)")
    ax.grid(alpha=0.3, which="both")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="time / h")
    return _save(fig, path)


def arrhenius_figure(temperature, sigma, fit: ArrheniusFit | None, path: Path) -> Path:
    """Write an Arrhenius plot: log10(sigma) (or sigma T, as fitted) against 1000/T, with the fit line.

    Parameters
    ----------
    temperature, sigma : array_like
        Temperatures, K, and conductivities, S/m (plotted in mS/cm).
    fit : ArrheniusFit or None
        The fit to draw, its activation energy in the legend.
    path : Path
        PNG to write.
    """
    t = np.asarray(temperature, dtype=float)
    s = np.asarray(sigma, dtype=float) * 10  # S/m -> mS/cm
    with_t = fit is not None and fit.with_temperature
    y = s * t if with_t else s
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(1000 / t, y, "o", color="k", label="measured")
    if fit is not None:
        grid = np.linspace(t.min(), t.max(), 50)
        line = fit.conductivity(grid) * 10 * (grid if with_t else 1)
        ax.semilogy(1000 / grid, line, "-", color="tab:red",
                    label=f"E$_a$ = {fit.activation_energy:.3f} ± {fit.activation_energy_err:.3f} eV")
    ax.set_xlabel("1000 / T / K$^{-1}$")
    ax.set_ylabel("σT / mS cm$^{-1}$ K" if with_t else "σ / mS cm$^{-1}$")
    celsius = ax.secondary_xaxis("top", functions=(lambda x: 1000 / np.maximum(x, 1e-9) - 273.15,
                                                   lambda c: 1000 / np.maximum(c + 273.15, 1e-9)))
    celsius.set_xlabel("T / °C")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def conductivity_points(run):
    """Return (T in K, sigma in S/m) of a run measured at several temperatures, else None.

    Read from the ``conductivity`` stream when it holds both (``conductivity_temperature``,
    ``conductivity_sigma``, as the ionic-conductivity plan stores them); else from the fitted bulk
    resistances, the cell's geometry and the chamber temperature last read before each fit.
    Stream names are looked up, never assumed: a run lacking them has no points.
    """
    points = _stream(run, CONDUCTIVITY)
    if points is not None and {f"{CONDUCTIVITY}_temperature", f"{CONDUCTIVITY}_sigma"} <= set(points.data_vars):
        temperature = np.asarray(points[f"{CONDUCTIVITY}_temperature"], dtype=float)
        sigma = np.asarray(points[f"{CONDUCTIVITY}_sigma"], dtype=float)
    else:
        found = _from_fits(run)
        if found is None:
            return None
        temperature, sigma = found
    # One temperature only is an isothermal run (plating): no Arrhenius plot to make.
    return (temperature, sigma) if temperature.size and np.ptp(temperature) >= 1.0 else None


def _from_fits(run):
    fits, environment = _stream(run, IMPEDANCE_FIT), _stream(run, "environment")
    cell = run.start.get("cell", {})
    if fits is None or FIT_PREFIX + "r_bulk" not in fits or not cell.get("thickness") or not cell.get("electrode_area"):
        return None
    if environment is None or "chamber_temperature" not in environment:
        return None
    # the last reading before each fit, not an interpolation: the chamber steps between setpoints
    before = np.searchsorted(np.asarray(environment.time, dtype=float), np.asarray(fits.time, dtype=float), "right")
    temperature = np.asarray(environment["chamber_temperature"], dtype=float)[np.maximum(before - 1, 0)]
    return temperature, ionic_conductivity(fit_values(fits, "r_bulk"), cell["thickness"], cell["electrode_area"])


# ---- the report ---------------------------------------------------------------------------------
def write_report(run, out: Path) -> Path:
    """Write a run's figures and a ``<uid8>-<plan>.html`` summary into ``out``; return the HTML's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{run.start['uid'][:8]}-{run.start.get('plan_name')}"
    names = streams(run)
    figures = [run_figure(run, out)] if POTENTIOSTAT in names or IMPEDANCE in names else []
    fits = _stream(run, IMPEDANCE_FIT)
    potentiostat = _stream(run, POTENTIOSTAT)
    area = run.start.get("cell", {}).get("electrode_area")
    spectra = _stream(run, IMPEDANCE)
    times = None if spectra is None else spectrum_field(spectra, "sweep_start").astype(float)
    # the zoom and the resistances against time and capacity are for runs passing current (plating)
    if potentiostat is not None and times is not None and len(times) > 2:
        figures.append(nyquist_zoom_figure(spectra, fits, _t0(run), out / f"{stem}-nyquist-plating.png"))
    if potentiostat is not None and fits is not None and times is not None and len(fits.time) == len(times) and area:
        figure = resistance_figure(fits, times, _t0(run), potentiostat, area, short_time(run.stop or {}))
        figures.append(_save(figure, out / f"{stem}-resistances.png"))
    if fits is not None and FIT_PREFIX + "drt_tau" in fits:
        figures.append(drt_figure(fits, _t0(run), out / f"{stem}-drt.png"))
    arrhenius = None
    points = conductivity_points(run)
    if points is not None:  # spectra that did not determine the bulk are stored as nan: left out
        used = points[1] == points[1]
        if used.sum() >= 3:
            arrhenius = arrhenius_fit(points[0][used], points[1][used])
            figures.append(arrhenius_figure(points[0][used], points[1][used], arrhenius, out / f"{stem}-arrhenius.png"))
    path = out / f"{stem}.html"
    path.write_text(report_html(run, fits, times, (points, arrhenius) if arrhenius else None, figures))
    return path


def report_html(run, fits, times, arrhenius: tuple[tuple, ArrheniusFit] | None, figures: list[Path]) -> str:
    """Return the HTML summary: what ran, how and why it stopped, the fitted values, the figures."""
    start, stop = run.start, run.stop or {}
    cell = start.get("cell", {})
    esc = html.escape
    rows = [
        ("run", start["uid"]), ("plan", start.get("plan_name", "")),
        ("cell", f"{cell.get('id', '-')} ({', '.join(filter(None, (cell.get('kind', '-'), cell.get('surface'))))})"),
        ("exit status", stop.get("exit_status", "still open")), ("stop reason", stop.get("reason", "")),
    ]
    parts = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>run {esc(start['uid'][:8])}</title></head><body>",
             f"<h1>{esc(str(start.get('plan_name')))} — cell {esc(str(cell.get('id', '')))}</h1>", "<table>"]
    parts += [f"<tr><th align='left'>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if fits is not None and times is not None and len(fits.time) == len(times):
        parts += ["<h2>Fitted spectra</h2>", _fit_table(fits, times - _t0(run))]
    if arrhenius is not None:
        (temperature, sigma), fit = arrhenius
        parts.append(f"<h2>Arrhenius fit</h2><p>E<sub>a</sub> = {fit.activation_energy:.3f} ± "
                     f"{fit.activation_energy_err:.3f} eV, σ(25 °C) = {float(fit.conductivity(298.15)) * 10:.4g} ± "
                     f"{float(fit.conductivity_err(298.15)) * 10:.2g} mS/cm, σ<sub>0</sub> = {fit.prefactor:.3g} S/m</p>")
        parts.append("<table border='1' cellpadding='3'><tr><th>T / °C</th><th>σ / mS cm<sup>-1</sup></th></tr>"
                     + "".join(f"<tr><td>{t - 273.15:.1f}</td><td>{_sigma_cell(s)}</td></tr>"
                               for t, s in zip(temperature, sigma))
                     + "</table>")
    parts += [f"<p><img src='{esc(p.name)}' alt='{esc(p.stem)}'></p>" for p in figures]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _fit_table(fits, seconds) -> str:
    columns = [("bulk", "R<sub>bulk</sub> / Ω cm²"), ("interface", "R<sub>int</sub> / Ω cm²")]
    columns = [(role, label) for role, label in columns if FIT_PREFIX + f"asr_{role}" in fits]
    head = "<tr><th>t / h</th>" + "".join(f"<th>{label}</th>" for _, label in columns) + "<th>rms residual</th></tr>"
    hours = np.asarray(seconds) / 3600
    rms = fit_values(fits, "residual_rms")
    body = []
    for i, h in enumerate(hours):
        cells = [_value_with_error(fit_values(fits, f"asr_{role}")[i], fit_values(fits, f"asr_{role}_err")[i])
                 for role, _ in columns]
        body.append(f"<tr><td>{h:.2f}</td>" + "".join(f"<td>{c}</td>" for c in cells) + f"<td>{rms[i]:.4f}</td></tr>")
    return "<table border='1' cellpadding='3'>" + head + "".join(body) + "</table>"


def _sigma_cell(sigma: float) -> str:
    return f"{sigma * 10:.4g}" if np.isfinite(sigma) else "left out: bulk not determined (see the stop reason)"


def _value_with_error(value: float, error: float) -> str:
    if not np.isfinite(value):
        return "not determined"
    if not np.isfinite(error) or error > ILL_DETERMINED * value:
        return f"{value:.4g} (not determined)"
    return f"{value:.4g} ± {error:.2g}"


def _stream(run, name: str):
    return read_stream(run, name) if name in streams(run) else None


def _t0(run) -> float:
    return run.start.get("clock_time", run.start["time"])  # data times are on the session clock


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return Path(path)

