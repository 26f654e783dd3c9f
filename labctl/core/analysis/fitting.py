"""Fit an equivalent circuit to one impedance spectrum, and say what the spectrum cannot determine.

The fit is weighted least squares on (Z_model - Z) / |Z| (modulus weighting: every point counts by
its relative error, as the instrument's noise is a fraction of |Z|). The arc circuits (two or
three R-CPE arcs) are fitted by variable projection: given each arc's time constant and exponent the
resistances enter linearly, so they are a non-negative linear least-squares solve inside a small
Levenberg-Marquardt loop on (ln tau, alpha) per arc, with the projected residual's exact Jacobian.
A start that ends with an arc at zero resistance, and the other circuits (blocking, shorted, any
bounds or fixed parameters but R0), are fitted in all coordinates (log-parameters) with the
circuit's analytic Jacobian through ``scipy.optimize.least_squares``. Uncertainties are always
taken from the full Jacobian at the minimum.

Starting values come from the spectrum's distribution of relaxation times (:mod:`labctl.core.analysis.drt`):
its peaks, fastest first, are grouped into the circuit's arcs in every order-keeping way, each
grouping is one start, and the best fit wins, so a small bulk arc beside a large interface arc is
neither missed nor swapped. Three-arc starts also split the best two-arc fit's bulk arc and its
interface arc, the two places a grain-boundary arc hides. Arcs are always reported fastest first
(bulk, grain boundary, interface). The DRT also gives the spectrum's own noise level (its
Kramers-Kronig residual): a fit whose residual is well above it has the wrong circuit and is
reported failed.

What a spectrum cannot determine is reported as such, never as a number: a parameter whose relative
uncertainty is above ``max_relative_error``, or that ran to a bound, has ``value() = nan`` and a
reason (``why()``). The usual case: a bulk arc whose apex lies far above the highest frequency adds
a real constant, indistinguishable from the leads' R0; then R0 + R_bulk (role ``series_bulk``) is
determined and each alone is not, unless the lead resistance bounds R0. Without one, an R0 too
large to be the leads hides an arc, and the bulk is not determined either. And every other start
that fits nearly as well is read as the data see it (:func:`_readings`): a role it puts elsewhere is
not determined (``FitResult.model_dependent``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares, nnls

from labctl.core.analysis.circuits import ALPHA_BOUNDS, BLOCKING, BULK_INTERFACE, LOG_BOUNDS, SHORTED, THREE_ARCS, Circuit
from labctl.core.analysis.drt import DRTResult, drt

ALPHA_BULK, ALPHA_INTERFACE = 0.95, 0.85  # typical exponents: only starting points
OHM_M2_TO_OHM_CM2 = 1e4
# An ideal capacitor (the bulk arc) fits to alpha = 1 within the noise, on either side; accept up to
# this much above 1 as that rather than pay for a bounded fit.
ALPHA_SLACK = 0.02
# Relative one-sigma uncertainty above which a value is "not determined": with the 2-sigma interval
# inside +-5 %, a value shown is one to stand behind. The issue's ~100 % would let 30 %-wide values
# through; pass max_relative_error=1.0 for that.
MAX_RELATIVE_ERROR = 0.02
# A fit whose residual (per degree of freedom) exceeds the spectrum's own KK noise by this factor
# has the wrong circuit (or the spectrum drifted).
FAILURE_RATIO = 1.5
NOISE_FLOOR = 1e-5  # relative; below it a spectrum is exact (synthetic), and any fit near it is fine
# The lead resistance measured by shorting the leads misses current collectors and contacts: R0 is
# taken as lead_resistance +- max(LEAD_TOLERANCE_OHM, LEAD_TOLERANCE * lead_resistance).
LEAD_TOLERANCE, LEAD_TOLERANCE_OHM = 0.1, 0.5
WARM_ENOUGH = 1.1  # a fit this close to the noise needs no further starts (nor a third arc)
THIRD_PEAK_SHARE = 0.01  # a DRT peak holding this much of the resistance is worth a third arc
MAX_EVALUATIONS = 80  # per start: a start that needs more is heading somewhere another start reaches
# Stop when a step changes the cost or the parameters by less than this, relatively: far below the
# uncertainties, and along a flat valley (R0 against a bulk arc above the sweep) it saves most steps.
TOLERANCE = 1e-6
MAX_PEAKS = 4  # DRT peaks grouped into starts; more would multiply the starts for nothing
# Without a lead resistance, an R0 above this share of the fastest arc is not the leads (ohms beside
# a bulk of hundreds of ohms and more): an arc above the sweep hides in it, and the fastest arc in
# the sweep may be a grain boundary's, so neither R0 nor the bulk is what it seems.
SERIES_SHARE = 0.25
DECISIVE_BIC = 10.0  # a BIC this much lower decides between circuits ("very strong", Kass & Raftery)
# Reading an alternative fit as the data see it: arcs whose apexes lie within this factor are one
# arc the optimiser split (a wider factor would also merge a grain-boundary arc into an interface
# arc two and a half times slower, which the corpus has), and an arc holding less than this share
# of the resistance is noise.
COALESCE, DEAD_SHARE = 2.0, 0.01
# A grain boundary's capacitance is that of thin boundary layers, a hundred times the bulk's and
# more, so its apex lies at least a decade below the bulk's: an arc within a decade of the fastest
# is a bend of the bulk arc (a depressed one, half above the sweep, splits so).
BULK_COALESCE = 10.0
# Three-arc starts: the two arc splits of the best two-arc fit, and (cold) this many from the DRT peaks.
DRT_STARTS_THREE_ARCS = 1
# Every role a fit summary can have, so a run's impedance_fit events keep one shape whichever
# circuit each spectrum chose.
ROLES = ("series", "bulk", "grain_boundary", "interface", "short", "series_bulk")
# Circuits fitted by variable projection, and their arcs; the iterated coordinates are (ln tau, alpha)
# per arc, ln tau kept where exp(alpha ln(w tau)) neither overflows nor leaves the Q bounds' range.
PROJECTED_ARCS = {BULK_INTERFACE: 2, THREE_ARCS: 3}
ALPHA_BOUNDS_FIT = ALPHA_BOUNDS
SETTLED = 1e-2  # a step lowering chi^2 by less than this (in noise variances) has converged
ETA_LOWER = np.tile([-60.0, ALPHA_BOUNDS[0]], 3)
ETA_UPPER = np.tile([40.0, ALPHA_BOUNDS[1]], 3)


@dataclass(frozen=True)
class FitResult:
    """One fitted spectrum.

    Parameters
    ----------
    circuit : Circuit
        The circuit fitted (for bulk and interface spectra: the one model selection chose).
    params, errors : numpy.ndarray
        Fitted values and their one-sigma uncertainties, natural units (ohm, F s^(alpha-1),
        dimensionless), in ``circuit.parameters`` order. Raw: undetermined ones included; read
        values through :meth:`value`, which says nan for those.
    covariance : numpy.ndarray
        Covariance of ``params``, natural units (zero rows for fixed parameters).
    residual_rms : float
        rms of the relative residuals (Z_fit - Z) / |Z| over real and imaginary parts.
    success : bool
        The residual is within ``FAILURE_RATIO`` of the spectrum's own noise (see ``reason``).
    evaluations : int
        Model evaluations used, all starts together.
    reason : str
        Why ``success`` is False, or which values are not determined; empty when all are.
    noise : float
        The spectrum's noise level from its DRT (KK) residual, relative, per component.
    undetermined : dict
        Parameter name -> why it is not determined.
    model_dependent : dict
        Role -> why: values on which another fit of nearly the same residual (another start, two
        or three arcs) disagrees.
    drt : DRTResult or None
        The spectrum's distribution of relaxation times.
    selection : str
        Which circuits were compared and the BIC of each.
    max_relative_error : float
        The relative one-sigma uncertainty above which a value was called not determined.
    """

    circuit: Circuit
    params: np.ndarray
    errors: np.ndarray
    residual_rms: float
    success: bool
    evaluations: int
    covariance: np.ndarray | None = None
    reason: str = ""
    noise: float = float("nan")
    undetermined: dict = field(default_factory=dict)
    model_dependent: dict = field(default_factory=dict)
    drt: DRTResult | None = None
    selection: str = ""
    max_relative_error: float = MAX_RELATIVE_ERROR

    @property
    def arcs(self) -> int:
        """Number of parallel R-CPE arcs in the circuit."""
        return sum(1 for name in self.circuit.parameters if name.startswith("R") and name not in ("R0", "Rs"))

    def _index(self, name: str) -> int:
        return self.circuit.parameters.index(self.circuit.roles.get(name, name))

    def has(self, name: str) -> bool:
        """Say whether the circuit has this parameter or role."""
        return name == "series_bulk" and "bulk" in self.circuit.roles or \
            self.circuit.roles.get(name, name) in self.circuit.parameters

    def why(self, name: str) -> str | None:
        """Return why a parameter or role is not determined, or None if it is."""
        if not self.has(name):
            return f"no {name} in {self.circuit.name}"
        if not self.success:
            return self.reason
        if name in self.model_dependent:
            return self.model_dependent[name]
        if name == "series_bulk":
            if name in self.undetermined:
                return self.undetermined[name]
            value, error = self.estimate(name), self.error(name)
            return None if error <= self.max_relative_error * value else f"relative uncertainty {error / value:.0%}"
        return self.undetermined.get(self.circuit.roles.get(name, name))

    def estimate(self, name: str) -> float:
        """Return the raw fitted value of a parameter or role, determined or not (for starting fits)."""
        if name == "series_bulk":
            return float(self.params[0] + self.params[self._index("bulk")])
        return float(self.params[self._index(name)])

    def value(self, name: str) -> float:
        """Get a parameter (``"R1"``) or role (``"bulk"``, ``"series_bulk"`` = R0 + R_bulk) by name;
        nan when the spectrum does not determine it (see :meth:`why`)."""
        return float("nan") if self.why(name) is not None else self.estimate(name)

    def error(self, name: str) -> float:
        """Get a parameter's or role's one-sigma uncertainty by name (raw, as :meth:`estimate`)."""
        if name == "series_bulk":
            i, j = 0, self._index("bulk")
            c = self.covariance
            return float(np.sqrt(max(c[i, i] + c[j, j] + 2 * c[i, j], 0.0)))
        return float(self.errors[self._index(name)])

    def impedance(self, frequencies) -> np.ndarray:
        """Return the fitted model's Z (ohm) at ``frequencies`` (Hz)."""
        return self.circuit.impedance(self.params, frequencies)

    def summary(self, area: float | None = None) -> dict[str, float]:
        """Return flat, storable values of one fixed set of keys per circuit family.

        Parameters
        ----------
        area : float, optional
            Electrode area, m^2. When given, each role's resistance is also given area-specific,
            ``asr_<role>`` in ohm cm^2.

        Returns
        -------
        dict
            The parameters (``R0``, ``R0_err``, ... natural units; always those of
            ``STORED_PARAMETERS``, nan beyond the fitted circuit's), ``circuit`` (its index in
            ``CIRCUITS``), ``r_<role>`` and ``r_<role>_err``
            in ohm for every role in ``ROLES`` (nan where not determined or not in the circuit),
            ``asr_<role>``/``asr_<role>_err`` in ohm cm^2, ``arcs``, ``success`` (1/0),
            ``residual_rms``, ``noise``, and the DRT (``drt_tau``, ``drt_resistance``, fixed length).
        """
        out = {}
        names = _stored_parameters(self.circuit)
        for name in names:
            k = self.circuit.parameters.index(name) if name in self.circuit.parameters else None
            out[name] = float(self.params[k]) if k is not None else float("nan")
            out[f"{name}_err"] = float(self.errors[k]) if k is not None else float("nan")
        for role in ROLES:
            value = self.value(role) if self.has(role) else float("nan")
            error = self.error(role) if np.isfinite(value) else float("nan")
            out[f"r_{role}"], out[f"r_{role}_err"] = value, error
            if area is not None:
                out[f"asr_{role}"] = value * area * OHM_M2_TO_OHM_CM2
                out[f"asr_{role}_err"] = error * area * OHM_M2_TO_OHM_CM2
        out["circuit"] = float(CIRCUITS.index(self.circuit)) if self.circuit in CIRCUITS else float("nan")
        out["arcs"] = float(self.arcs)
        out["success"] = float(self.success)
        out["residual_rms"] = self.residual_rms
        out["noise"] = self.noise
        if self.drt is not None:
            out["drt_tau"], out["drt_resistance"] = self.drt.tau, self.drt.resistance
            out["drt_regularisation"] = self.drt.regularisation
        return out


CIRCUITS = (BULK_INTERFACE, BLOCKING, SHORTED, THREE_ARCS)  # a summary's ``circuit`` is an index into this
STORED_PARAMETERS = (*THREE_ARCS.parameters, "Rs")  # every circuit's parameter names are among these


def _stored_parameters(circuit: Circuit) -> tuple[str, ...]:
    """Return the parameter keys a summary stores: the same for every circuit, nan where it has none."""
    return STORED_PARAMETERS


def fit_spectrum(frequencies, z, circuit: Circuit = BULK_INTERFACE, *, previous: FitResult | None = None,
                 guess=None, fixed: dict | None = None, bounds: dict | None = None,
                 lead_resistance: float | None = None, select: bool = True,
                 max_relative_error: float = MAX_RELATIVE_ERROR) -> FitResult:
    """Fit ``circuit`` to a spectrum; for bulk and interface arcs, choose between two and three arcs.

    Read values through the result's :meth:`FitResult.value` (nan where the spectrum does not
    determine them, :meth:`FitResult.why` says why), :meth:`FitResult.error` (one sigma) and
    ``FitResult.covariance`` (natural units, ``circuit.parameters`` order, arcs fastest first)::

        fit = fit_spectrum(f, z, lead_resistance=2.1)             # R0 held near the leads' 2.1 ohm
        fit = fit_spectrum(f, z, bounds={"R0": (1.5, 3.0)})        # R0 within 1.5-3 ohm
        fit = fit_spectrum(f, z, SHORTED, fixed={"R1": 3100.0})    # a parameter held at a value
        if fit.why("bulk") is None:
            r_bulk, sigma = fit.value("bulk"), fit.error("bulk")
        r_total, sigma_total = fit.value("series_bulk"), fit.error("series_bulk")  # R0 + R_bulk

    Parameters
    ----------
    frequencies : array_like
        Frequencies, Hz, in any order.
    z : array_like of complex
        Measured impedance, ohm (Z' + j Z'', Z'' negative for a capacitive arc).
    circuit : Circuit
        The equivalent circuit (default: bulk and interface arcs; with ``select``, a grain-boundary
        arc is added when the BIC prefers it).
    previous : FitResult, optional
        The fit of the previous spectrum of the same cell: its values are one more start.
    guess : array_like, optional
        Explicit starting values in natural units; then only that start is fitted.
    fixed : dict, optional
        Parameters of ``circuit`` held at a value, e.g. ``{"R0": 5.0}``; reported with zero
        uncertainty. Holding any but R0 turns model selection off (the names are ``circuit``'s).
    bounds : dict, optional
        Parameters of ``circuit`` held within (low, high), natural units, e.g. ``{"R0": (4, 6)}``;
        one ending at a bound is reported not determined. Bounding any but R0 turns model
        selection off, as for ``fixed``.
    lead_resistance : float, optional
        The instrument's lead resistance (lab file, measured by shorting the leads), ohm: bounds R0
        to lead_resistance +- max(0.5 ohm, 10 %) (as a Gaussian prior, so the bound's width enters
        the uncertainties), which separates R0 from a bulk arc above the sweep.
    select : bool
        Choose between two and three arcs by BIC (only for ``BULK_INTERFACE``).
    max_relative_error : float
        Relative one-sigma uncertainty above which a value is reported not determined.

    Returns
    -------
    FitResult
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(z, dtype=complex)
    fixed, bounds = dict(fixed or {}), dict(bounds or {})
    _check_constraints(circuit, fixed, bounds)
    select = select and set(fixed) | set(bounds) <= {"R0"}
    distribution = drt(f, z, spur=circuit is BLOCKING)
    noise = max(distribution.noise, NOISE_FLOOR)
    setup = _Setup(f, z, noise, fixed, bounds, lead_resistance, max_relative_error, distribution)
    if guess is not None:
        return setup.finish(circuit, [setup.fit(circuit, np.asarray(guess, dtype=float))], "")
    candidates = [circuit]
    if select and circuit is BULK_INTERFACE:
        candidates.append(THREE_ARCS)
    results = {}
    for candidate in candidates:
        if candidate is THREE_ARCS and BULK_INTERFACE in results and \
                not _worth_three_arcs(results[BULK_INTERFACE], distribution, noise):
            break
        starts = []
        if previous is not None and previous.circuit is candidate:
            starts.append(setup.fit(candidate, previous.params))  # warm start: enough if it fits
        seeds = _starts(candidate, f, z, distribution)
        if candidate is THREE_ARCS and BULK_INTERFACE in results:
            # after a warm start the splits of its fit suffice; a cold one adds the DRT's reading
            seeds = _split_starts(setup.best_params(results[BULK_INTERFACE]),
                                  [] if previous is not None else seeds[:DRT_STARTS_THREE_ARCS])
        for start in seeds:
            if candidate is BULK_INTERFACE and starts and min(fit["rms_dof"] for fit in starts) <= WARM_ENOUGH * noise:
                break  # a start that fits to the noise is the answer; the rest would only cost time
            starts.append(setup.fit(candidate, start))
        results[candidate] = starts
    bic = {c: min(_bic(fit) for fit in fits) for c, fits in results.items()}
    chosen = min(bic, key=bic.get)
    selection = "; ".join(f"{c.name}: BIC {b:.1f}" for c, b in bic.items())
    if len(bic) > 1:
        selection += f"; chose {chosen.name}"
    evaluations = sum(fit["evaluations"] for fits in results.values() for fit in fits)
    result = setup.finish(chosen, results[chosen], selection, evaluations=evaluations)
    best = min(results[chosen], key=lambda fit: fit["cost"])
    for fit in (fit for fits in results.values() for fit in fits):
        margin = fit["residuals"].size * np.log(max(fit["cost"], 1e-300) / max(best["cost"], 1e-300))
        if fit is not best and margin < DECISIVE_BIC:  # fits (nearly) as well: can the data tell them apart?
            _mark_model_dependent(result, setup.finish(fit["circuit"], [fit], selection), margin,
                                  setup.omega.max(), setup.omega.min())
    return result


def _check_constraints(circuit: Circuit, fixed: dict, bounds: dict) -> None:
    """Raise ValueError naming the parameter when a fixed value or a bound is not one ``circuit`` takes."""
    for name in (*fixed, *bounds):
        if name not in circuit.parameters:
            raise ValueError(f"parameter {name!r}: {circuit.name} has {', '.join(circuit.parameters)}")
        if name in fixed and name in bounds:
            raise ValueError(f"parameter {name!r}: fixed and bounded at once")
    lower, upper = circuit.bounds(slack=ALPHA_SLACK)  # a fitted ideal capacitor may come back a hair above 1
    for name, value in fixed.items():
        k = circuit.parameters.index(name)
        if not (np.isfinite(value) and (value > 0 if circuit.is_log[k] else lower[k] <= value <= upper[k])):
            raise ValueError(f"parameter {name!r} fixed at {value}: allowed "
                             + ("above 0" if circuit.is_log[k] else f"{lower[k]} to {upper[k]}"))
    for name, (lo, hi) in bounds.items():
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi) or (circuit.is_log[circuit.parameters.index(name)] and lo <= 0):
            raise ValueError(f"parameter {name!r} bounds ({lo}, {hi}): allowed low < high, both finite"
                             + (", low above 0" if circuit.is_log[circuit.parameters.index(name)] else ""))


def _mark_model_dependent(result: FitResult, other: FitResult, margin: float, omega_max: float,
                          omega_min: float) -> None:
    """Mark the roles on which ``result`` and another fit of (nearly) the same residual disagree.

    The other fit is read as the data see it (:func:`_readings`). Its values count as uncertain by
    the limit of "determined", whatever its own error bars say: one whose arcs the data cannot split
    lands anywhere along its valley, and if that is far from ``result``'s value, the data do not say
    which is right.
    """
    if not other.success:
        return
    readings = _readings(other, omega_max, omega_min)
    for role, b in readings.items():
        if not result.has(role) or result.why(role) is not None:
            continue
        a = result.estimate(role)
        if abs(a - b) > 2 * np.hypot(result.error(role), result.max_relative_error * b):
            result.model_dependent[role] = (f"{other.circuit.name} fits as well (log-likelihood {margin / 2:.1f} "
                                            f"lower) with {b:.4g} ohm, not {a:.4g}")


def _readings(fit: FitResult, omega_max: float, omega_min: float) -> dict[str, float]:
    """Return a fit's resistances by role as the data see them.

    Arcs whose apexes lie within ``COALESCE`` of each other (``BULK_COALESCE`` of the fastest) are
    one arc in the data, whatever the circuit calls them; an arc under ``DEAD_SHARE`` of the arcs'
    resistance, or the only one whose resistance the fit does not tell from zero, is noise; an arc far
    below the sweep is a capacitance, its resistance unseen; and what is then left far above the
    sweep is this reading's bulk, seen only as a constant.
    """
    if fit.circuit not in (BULK_INTERFACE, THREE_ARCS):
        return {}
    p = fit.params
    # (R, tau, seen): the one arc in the sweep whose resistance its fit does not tell from zero (one
    # sigma) is not seen, noise a third arc fitted
    arcs = sorted([[p[k], (p[k] * p[k + 1]) ** (1 / p[k + 2]), fit.errors[k] < p[k] or
                    (p[k] * p[k + 1]) ** (1 / p[k + 2]) * omega_max < 0.1] for k in range(1, p.size, 3)],
                  key=lambda arc: arc[1])
    if sum(not seen for _, _, seen in arcs) > 1:  # several: a split the fit leaves open, not noise
        arcs = [[r, tau, True] for r, tau, _ in arcs]
    merged = []
    for r, tau, seen in arcs:
        if merged and tau < (BULK_COALESCE if len(merged) == 1 else COALESCE) * merged[-1][1]:
            r0, tau0, _ = merged[-1]
            merged[-1] = [r0 + r, float(np.exp((r0 * np.log(tau0) + r * np.log(tau)) / (r0 + r))), True]
        else:
            merged.append([r, tau, seen])
    merged = [arc[:2] for arc in merged if arc[2]]
    total = sum(r for r, _ in merged)
    merged = [arc for arc in merged if arc[0] >= DEAD_SHARE * total and arc[1] * omega_min < 10]
    hidden = 0.0  # far above the sweep: this reading's bulk arc, seen only as a constant
    while merged and merged[0][1] * omega_max < 0.1:
        hidden += merged.pop(0)[0]
    out = {"series": p[0]}
    if hidden > 0:
        out.update(bulk=hidden, series_bulk=p[0] + hidden)
    elif merged:
        out.update(bulk=merged[0][0], series_bulk=p[0] + merged[0][0])
    if len(merged) > (0 if hidden > 0 else 1):
        out["interface"] = merged[-1][0]
    return out


def _split_starts(two: np.ndarray, seeds: list[np.ndarray]) -> list[np.ndarray]:
    """Return three-arc starts that split an arc of the best two-arc fit ``two`` (fastest first), then
    ``seeds``: a grain-boundary arc hides in the bulk arc or in the interface arc as often as the
    DRT shows it, and only a start on each side finds both readings of such a spectrum."""
    r0, r1, q1, a1, r2, q2, a2 = two
    tau1, tau2 = (r1 * q1) ** (1 / a1), (r2 * q2) ** (1 / a2)

    def arc(r, tau, alpha):
        return [r, tau**alpha / r, alpha]

    in_interface = [r0, *arc(r1, tau1, a1), *arc(r2 / 2, tau2 / 5, min(a2 + 0.1, 1.0)),
                    *arc(r2 / 2, tau2 * 5, min(a2 + 0.1, 1.0))]
    in_bulk = [r0, *arc(0.7 * r1, tau1 / 2, a1), *arc(0.3 * r1, tau1 * 30, ALPHA_INTERFACE), *arc(r2, tau2, a2)]
    return [np.array(in_interface), np.array(in_bulk), *seeds]


def _worth_three_arcs(two: list[dict], distribution: DRTResult, noise: float) -> bool:
    """Say whether a third arc could help: the DRT shows three peaks, or two arcs leave a residual."""
    best = min(two, key=lambda fit: fit["cost"])
    if best["rms_dof"] > WARM_ENOUGH * noise:
        return True
    # Two arcs fit to the noise: a third only where the DRT clearly shows one (and a close call then
    # leaves what the circuits disagree on not determined).
    return len(distribution.peaks(min_share=THIRD_PEAK_SHARE)) >= 3 and best["rms_dof"] > NOISE_FLOOR


def _bic(fit: dict) -> float:
    """Return the Bayesian information criterion, n ln(RSS/n) + k ln n.

    Only reached when two arcs leave a residual above the noise or the DRT shows a third peak, so
    an exact spectrum, which both circuits fit to rounding, is not handed to a third arc."""
    n = fit["residuals"].size
    rss = max(2 * fit["cost"], n * (0.1 * NOISE_FLOOR) ** 2)  # below that both circuits fit exactly: a tie
    return n * np.log(rss / n) + fit["free"] * np.log(n)


class _Setup:
    """One spectrum's fitting problem: data, weights, noise, fixed and bounded parameters."""

    def __init__(self, f, z, noise, fixed, bounds, lead_resistance, max_relative_error, distribution):
        self.f, self.z, self.omega, self.weight = f, z, 2 * np.pi * f, 1 / np.abs(z)
        self.noise, self.fixed, self.bounds = noise, fixed, bounds
        self.lead, self.limit, self.distribution = lead_resistance, max_relative_error, distribution

    def _free_bounds(self, circuit: Circuit, free: np.ndarray):
        lower, upper = circuit.bounds()
        for name, (lo, hi) in self.bounds.items():
            k = circuit.parameters.index(name)
            lower[k], upper[k] = circuit.to_fit([lo])[0] if circuit.is_log[k] else lo, \
                circuit.to_fit([hi])[0] if circuit.is_log[k] else hi
        return lower[free], upper[free]

    def fit(self, circuit: Circuit, start: np.ndarray) -> dict:
        """Fit from one start; return the raw outcome (fit coordinates, Jacobian, cost).

        Arc circuits without bounds are fitted by variable projection (:meth:`_projected`); the
        rest, and a projected fit that leaves the physical range, in all coordinates (:meth:`_full`).
        """
        if circuit in PROJECTED_ARCS and not self.bounds and set(self.fixed) <= {"R0"}:
            outcome = self._projected(circuit, start)
            if outcome is not None:
                return outcome
        return self._full(circuit, start)

    def _prior(self, circuit: Circuit, free: np.ndarray) -> float | None:
        """Return the lead-resistance prior's sigma on R0, ohm, or None without one."""
        if self.lead is None or "R0" not in circuit.parameters or not free[0]:
            return None
        return max(LEAD_TOLERANCE_OHM, LEAD_TOLERANCE * self.lead)

    def _projected(self, circuit: Circuit, start: np.ndarray) -> dict | None:
        """Fit by variable projection (Golub & Pereyra 1973): given each arc's time constant and
        exponent, Z = R0 + sum R_k / (1 + (j w tau_k)^a_k) is linear in the resistances, which are
        then a small non-negative least-squares solve; only the 2 per arc (ln tau_k, a_k) are
        iterated (:func:`_levenberg_marquardt`), with Golub and Pereyra's Jacobian of the projected
        residual. The minimum is the full problem's (Q_k = tau_k^a_k / R_k); its outcome is
        evaluated there in all coordinates, as :meth:`_full` reports it. None when the minimum is
        not finite or holds an arc at zero resistance (then :meth:`_full` fits)."""
        arcs = PROJECTED_ARCS[circuit]
        p = np.asarray(start, dtype=float)
        r, q, a = np.abs(p[1::3]), np.abs(p[2::3]), np.clip(p[3::3], *ALPHA_BOUNDS_FIT)
        eta0 = np.column_stack([np.log(np.maximum(r * q, 1e-300)) / a, a]).ravel()
        free = np.array([name not in self.fixed for name in circuit.parameters])
        sigma = self._prior(circuit, free)
        w, log_omega = self.weight, np.log(self.omega)
        n = self.f.size
        rows = 2 * n + (sigma is not None)
        target = np.zeros(rows)
        target[:n], target[n:2 * n] = (self.z * w).real, (self.z * w).imag
        series = np.zeros(rows)  # the R0 column
        series[:n] = w
        if sigma is not None:
            series[-1] = self.noise / sigma
            target[-1] = self.noise * self.lead / sigma
        if not free[0]:
            target = target - self.fixed["R0"] * series
        lower, upper = ETA_LOWER[:eta0.size], ETA_UPPER[:eta0.size]
        design = np.zeros((rows, arcs + 1))  # [R0 column, one column per arc], refilled at each eta
        design[:, 0] = series
        d = np.zeros((rows, 2 * arcs))  # the arcs' columns' derivatives by (ln tau, alpha)
        w_col, phase = w[:, None], 0.5j * np.pi
        held = [None]  # which resistances the last solve held at zero (None: none)

        def solve(eta):
            """Return the projected residuals, their Jacobian and the resistances at ``eta``."""
            ln_tau, alpha = eta[0::2], eta[1::2]
            log_wt = log_omega[:, None] + ln_tau  # ln(w tau), n x arcs
            s = np.exp(alpha * log_wt) * np.exp(alpha * phase)  # (j w tau)^alpha
            col = 1 / (1 + s)
            cw = col * w_col
            design[:n, 1:], design[n:2 * n, 1:] = cw.real, cw.imag
            a_mat = design if free[0] else design[:, 1:]
            # Resistances are not negative: the minimum with some held at zero. Try the last step's
            # set of those first (it rarely changes), and ask NNLS only when it is not optimal.
            active = held[0]
            basis = a_mat if active is None else a_mat[:, active]
            pseudo = _pseudo_inverse(basis)
            c = pseudo @ target if pseudo is not None else None
            optimal = c is not None and np.all(c >= 0)
            if optimal:
                residuals = basis @ c - target
                if active is not None:  # and held at zero rightly: each would raise the cost
                    optimal = bool(np.all(a_mat[:, ~active].T @ residuals >= 0))
            if not optimal:
                active = nnls(a_mat, target)[0] > 0
                active = None if np.all(active) else active
                basis = a_mat if active is None else a_mat[:, active]
                pseudo = _pseudo_inverse(basis)
                if pseudo is None:
                    pseudo = np.linalg.pinv(basis)
                c = pseudo @ target
                residuals = basis @ c - target
            held[0] = active
            if active is not None:
                full_c = np.zeros(active.size)
                full_c[active] = c
                c = full_c
            coef = np.concatenate([[0.0], c]) if not free[0] else c
            # d col_k / d ln tau_k = a_k dcol/dln s, d col_k / d a_k = ln(j w tau_k) dcol/dln s
            d_col = -cw * col * s
            d_tau, d_alpha = d_col * alpha, d_col * (log_wt + phase)
            d[:n, 0::2], d[n:2 * n, 0::2] = d_tau.real, d_tau.imag
            d[:n, 1::2], d[n:2 * n, 1::2] = d_alpha.real, d_alpha.imag
            # Golub & Pereyra's Jacobian of the projected residual -P b: P dA c - (A+)^T dA^T r
            r_arcs = np.repeat(coef[1:], 2)
            jac = d * r_arcs
            jac -= basis @ (pseudo @ jac)
            if active is None:
                jac -= pseudo[-arcs:].repeat(2, axis=0).T * (d.T @ residuals)
            else:
                arc_active = np.repeat(active[-arcs:], 2)
                position = np.repeat(np.cumsum(active)[-arcs:] - 1, 2)  # the arc's column among the active
                jac[:, arc_active] -= pseudo[position[arc_active]].T * (d[:, arc_active].T @ residuals)
            return residuals, jac, coef

        # An ideal capacitor fits to alpha = 1 within the noise, on either side: exponents may end up
        # to ALPHA_SLACK above 1; one that runs to that is held at 1 in a second fit.
        slack = np.where(np.arange(eta0.size) % 2, ALPHA_SLACK, 0.0)
        eta, coef, evaluations, converged = _levenberg_marquardt(solve, eta0, lower, upper + slack,
                                                                 SETTLED * self.noise**2)
        if np.any(eta >= upper + slack - 1e-9) and np.any(slack[eta >= upper + slack - 1e-9] > 0):
            eta, coef, more, converged = _levenberg_marquardt(solve, eta, lower, upper, SETTLED * self.noise**2)
            evaluations += more
        if not np.all(coef[1:] > 0):
            # An arc held at zero resistance has no gradient left to come back by (and a split the
            # data allow may be missed so): this start is fitted in all coordinates instead.
            return None
        ln_tau, alpha = eta[0::2], eta[1::2]
        resistance = np.maximum(coef[1:], np.exp(LOG_BOUNDS[0]))
        params = np.empty(1 + 3 * arcs)
        params[0] = self.fixed["R0"] if not free[0] else max(coef[0], np.exp(LOG_BOUNDS[0]))
        params[1::3], params[3::3] = resistance, alpha
        params[2::3] = np.exp(alpha * ln_tau) / resistance
        theta = circuit.to_fit(params)
        if not np.all(np.isfinite(theta)):
            return None
        # a time constant far outside the sweep may take Q past its bounds: held there, reported at a bound
        theta = np.clip(theta, *circuit.bounds(slack=ALPHA_SLACK))
        return self._outcome(circuit, theta, free, sigma, evaluations, converged)

    def _outcome(self, circuit: Circuit, theta: np.ndarray, free: np.ndarray, sigma: float | None,
                 evaluations: int, converged: bool) -> dict:
        """Return the outcome of a fit that ended at ``theta`` (all coordinates): residuals and
        Jacobian of the free coordinates there, cost, which coordinates are at a bound."""
        z, dz = circuit.evaluate(circuit.from_fit(theta), self.omega)
        r = (z - self.z) * self.weight
        residuals = [r.real, r.imag]
        d = dz[free] * self.weight
        jac = np.concatenate([d.real, d.imag], axis=1).T
        if sigma is not None:
            residuals.append([self.noise * (np.exp(theta[0]) - self.lead) / sigma])
            row = np.zeros((1, jac.shape[1]))
            row[0, 0] = self.noise * np.exp(theta[0]) / sigma
            jac = np.vstack([jac, row])
        residuals = np.concatenate(residuals)
        cost = 0.5 * float(residuals @ residuals)
        lower, upper = circuit.bounds()
        n, p = residuals.size, int(free.sum())
        return {"circuit": circuit, "theta": theta, "free": p, "fixed": free, "jac": jac,
                "residuals": residuals, "cost": cost, "converged": converged,
                "rms_dof": float(np.sqrt(2 * cost / max(n - p, 1))), "evaluations": int(evaluations),
                "at_bound": _at_bound(theta[free], lower[free], upper[free])}

    def _full(self, circuit: Circuit, start: np.ndarray) -> dict:
        """Fit from one start in all coordinates (log R, log Q, alpha) with the analytic Jacobian."""
        names = circuit.parameters
        free = np.array([name not in self.fixed for name in names])
        theta_all = circuit.to_fit(start)
        for name, value in self.fixed.items():
            theta_all[names.index(name)] = circuit.to_fit([value])[0] if circuit.is_log[names.index(name)] else value
        prior = self.lead is not None and "R0" in names and free[names.index("R0")]
        if prior:
            r0_sigma = max(LEAD_TOLERANCE_OHM, LEAD_TOLERANCE * self.lead)
            theta_all[0] = np.log(max(self.lead, 1e-3))
        cache = {}

        def model(theta):
            key = theta.tobytes()
            if key not in cache:  # least_squares asks for residuals and Jacobian at the same point
                cache.clear()
                full = theta_all.copy()
                full[free] = theta
                cache[key] = circuit.evaluate(circuit.from_fit(full), self.omega)
            return cache[key]

        def residuals(theta):
            r = (model(theta)[0] - self.z) * self.weight
            out = [r.real, r.imag]
            if prior:
                out.append([self.noise * (np.exp(_r0(theta)) - self.lead) / r0_sigma])
            return np.concatenate(out)

        def _r0(theta):
            return theta[0]  # R0 is the first parameter of every circuit and free when prior is set

        def jacobian(theta):
            d = model(theta)[1][free] * self.weight
            jac = np.concatenate([d.real, d.imag], axis=1).T
            if prior:
                row = np.zeros((1, theta.size))
                row[0, 0] = self.noise * np.exp(theta[0]) / r0_sigma
                jac = np.vstack([jac, row])
            return jac

        lower, upper = self._free_bounds(circuit, free)
        theta0 = np.clip(theta_all[free], lower + 1e-9, upper - 1e-9)
        evaluations = 0
        if not self.bounds:
            # Levenberg-Marquardt (MINPACK) needs a third of the time of the bounded trust-region
            # method; only if it leaves the physical range is the fit redone with bounds.
            result = least_squares(residuals, theta0, jac=jacobian, method="lm", max_nfev=MAX_EVALUATIONS,
                                   ftol=TOLERANCE, xtol=TOLERANCE)
            evaluations += result.nfev
            theta0 = np.clip(result.x, lower + 1e-9, upper - 1e-9) if np.all(np.isfinite(result.x)) else theta0
        if self.bounds or not _physical(circuit, result.x, free, lower, upper):
            result = least_squares(residuals, theta0, jac=jacobian, bounds=(lower, upper), method="trf",
                                   max_nfev=MAX_EVALUATIONS // 2, ftol=TOLERANCE, xtol=TOLERANCE)
            evaluations += result.nfev
        full = theta_all.copy()
        wide_lower, wide_upper = circuit.bounds(slack=1.0)
        full[free] = np.clip(result.x, wide_lower[free], wide_upper[free]) if not self.bounds else result.x
        n, p = result.fun.size, int(free.sum())
        return {"circuit": circuit, "theta": full, "free": p, "fixed": free, "jac": result.jac,
                "residuals": result.fun, "cost": float(result.cost), "converged": bool(result.success),
                "rms_dof": float(np.sqrt(2 * result.cost / max(n - p, 1))), "evaluations": int(evaluations),
                "at_bound": _at_bound(result.x, lower, upper)}

    def best_params(self, fits: list[dict]) -> np.ndarray:
        """Return the natural parameters of the lowest-cost fit, arcs fastest first."""
        best = min(fits, key=lambda fit: fit["cost"])
        params = best["circuit"].from_fit(best["theta"])
        return params[_fastest_first(best["circuit"], params)]

    def finish(self, circuit: Circuit, fits: list[dict], selection: str, evaluations: int | None = None) -> FitResult:
        """Turn the best start's outcome into a FitResult: order arcs, propagate errors, judge."""
        best = min(fits, key=lambda fit: fit["cost"])
        free = best["fixed"]
        params = circuit.from_fit(best["theta"])
        dof = max(best["residuals"].size - best["free"], 1)
        cov_theta = np.zeros((params.size, params.size))
        cov_theta[np.ix_(free, free)] = _covariance(best["jac"], 2 * best["cost"] / dof)
        scale = np.where(circuit.is_log, params, 1.0)
        covariance = cov_theta * np.outer(scale, scale)
        at_bound = np.zeros(params.size, dtype=bool)
        at_bound[free] = best["at_bound"]
        order = _fastest_first(circuit, params)
        params, covariance, at_bound = params[order], covariance[np.ix_(order, order)], at_bound[order]
        errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        undetermined = {}
        for k, name in enumerate(circuit.parameters):
            if at_bound[k]:
                undetermined[name] = "at a bound of the fit"
            elif not (np.isfinite(params[k]) and np.isfinite(errors[k])):
                undetermined[name] = "not finite"
            elif circuit.is_log[k] and errors[k] > self.limit * params[k]:
                undetermined[name] = f"relative uncertainty {errors[k] / params[k]:.0%}"
        if self.lead is None and "bulk" in circuit.roles and "R0" not in self.fixed:
            self._hidden_arc(circuit, params, undetermined)
        reason = ""
        success = True  # judged by the residual: a start stopped at its evaluation cap may still fit
        if best["rms_dof"] > FAILURE_RATIO * self.noise:
            success = False
            reason = (f"residual {best['rms_dof']:.2g} is {best['rms_dof'] / self.noise:.1f} times the spectrum's "
                      f"own noise {self.noise:.2g} (KK): the circuit does not describe it")
        elif undetermined:
            reason = "not determined: " + ", ".join(f"{name} ({why})" for name, why in undetermined.items())
        return FitResult(
            circuit=circuit, params=params, errors=errors, covariance=covariance,
            residual_rms=float(np.sqrt(np.mean(best["residuals"][:2 * self.f.size] ** 2))), success=success,
            evaluations=evaluations if evaluations is not None else best["evaluations"], reason=reason,
            noise=self.noise, undetermined=undetermined, drt=self.distribution, selection=selection,
            max_relative_error=self.limit,
        )


    def _hidden_arc(self, circuit: Circuit, params: np.ndarray, undetermined: dict) -> None:
        """Mark R0 and every arc but the slowest not determined when R0 is too large to be the leads."""
        bulk = circuit.parameters.index(circuit.roles["bulk"])
        if params[0] <= SERIES_SHARE * params[bulk]:
            return
        why = (f"R0 {params[0]:.4g} ohm is more than {SERIES_SHARE:.0%} of the fastest arc: an arc above the "
               "sweep may hide in it (give the lead resistance to bound R0)")
        slowest = circuit.parameters.index(circuit.roles.get("interface", circuit.roles["bulk"]))
        for name in circuit.parameters[:slowest]:
            if name.startswith("R") and name != "Rs":
                undetermined.setdefault(name, why)
        undetermined["series_bulk"] = why


def _pseudo_inverse(a: np.ndarray) -> np.ndarray | None:
    """Return the pseudo-inverse of a tall matrix of few columns from its (column-scaled) normal
    equations, or None when they are singular or the solution is not finite."""
    norms = np.sqrt(np.einsum("ij,ij->j", a, a))
    if not np.all(norms > 0):
        return None
    scaled = a / norms
    try:
        out = np.linalg.solve(scaled.T @ scaled, scaled.T) / norms[:, None]
    except np.linalg.LinAlgError:
        return None
    return out if np.all(np.isfinite(out)) else None


def _levenberg_marquardt(solve, eta, lower, upper, settled: float, max_evaluations: int = MAX_EVALUATIONS):
    """Minimise |r(eta)|^2 within the box (lower, upper) by Levenberg-Marquardt.

    ``solve(eta)`` returns (residuals, Jacobian, resistances). A small problem (2 coordinates per
    arc), so each step is one small linear solve; Marquardt's scaling by the Jacobian's column
    norms, Nielsen's damping update. A coordinate on the box's edge whose gradient points out of it
    is held there for the step. Stops when a step changes the coordinates by less than
    ``TOLERANCE`` relatively, or lowers the cost by less than ``TOLERANCE`` of it or by less than
    ``settled`` (a small fraction of the noise variance: what is left is no information).
    Returns (eta, resistances, evaluations, converged).
    """
    eta = np.clip(eta, lower, upper)
    r, jac, coef = solve(eta)
    cost = r @ r
    damping, grow, evaluations, moved = 1e-3, 2.0, 1, True
    while evaluations < max_evaluations:
        if moved:  # the normal equations at a new point (a rejected step only raises the damping)
            gradient = jac.T @ r
            movable = ~(((eta <= lower) & (gradient > 0)) | ((eta >= upper) & (gradient < 0)))
            if not movable.any():
                return eta, coef, evaluations, True
            jm, gm = jac[:, movable], gradient[movable]
            gram = jm.T @ jm
            diagonal = gram.diagonal()
            scale = np.diag(np.maximum(diagonal, 1e-12 * max(diagonal.max(), 1e-300)))
            moved = False
        try:
            step_m = -np.linalg.solve(gram + damping * scale, gm)
        except np.linalg.LinAlgError:
            damping *= grow
            grow *= 2
            continue
        step = np.zeros_like(eta)
        step[movable] = step_m
        trial = np.clip(eta + step, lower, upper)
        step = trial - eta
        if np.all(np.abs(step) <= TOLERANCE * (np.abs(eta) + TOLERANCE)):
            return eta, coef, evaluations, True
        predicted = -(2 * gradient @ step + (jac @ step) @ (jac @ step))
        r_new, jac_new, coef_new = solve(trial)
        evaluations += 1
        cost_new = r_new @ r_new
        if np.isfinite(cost_new) and cost_new < cost:
            gain = cost - cost_new
            rho = gain / predicted if predicted > 0 else 0.0
            eta, r, jac, coef, cost, moved = trial, r_new, jac_new, coef_new, cost_new, True
            damping *= max(1 / 3, 1 - (2 * rho - 1) ** 3)
            grow = 2.0
            if gain <= max(TOLERANCE * (cost + gain), settled) and predicted <= max(TOLERANCE * (cost + gain), 2 * settled):
                return eta, coef, evaluations, True
        else:
            damping *= grow
            grow *= 2
            if damping > 1e12:
                return eta, coef, evaluations, True  # no step lowers the cost: a minimum (on the box's edge, maybe)
    return eta, coef, evaluations, False


def _fastest_first(circuit: Circuit, params: np.ndarray) -> np.ndarray:
    """Return the parameter order that puts the arcs by time constant, fastest (bulk) first.

    R0-p(R1,CPE1)-p(R2,CPE2) is the same circuit with its arcs swapped, and a fit may land on
    either labelling; the bulk arc is the faster one (MHz against Hz to kHz).
    """
    first = {BULK_INTERFACE: 1, THREE_ARCS: 1, SHORTED: 2}.get(circuit)
    if first is None:
        return np.arange(params.size)
    arcs = range(first, params.size, 3)
    taus = [(params[k] * params[k + 1]) ** (1 / params[k + 2]) for k in arcs]
    order = list(range(first))
    for k in np.array(list(arcs))[np.argsort(taus)]:
        order += [k, k + 1, k + 2]
    return np.array(order)


def _physical(circuit: Circuit, theta: np.ndarray, free, lower, upper) -> bool:
    """Say whether fit coordinates are finite and within bounds, CPE exponents up to ALPHA_SLACK."""
    upper = np.where(circuit.is_log[free], upper, upper + ALPHA_SLACK)
    return bool(np.all(np.isfinite(theta)) and np.all(theta >= lower) and np.all(theta <= upper))


def _at_bound(theta: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Return which coordinates ended at (or, for an unbounded fit, beyond) their bounds."""
    span = upper - lower
    margin = np.where(span > 10, 1e-3 * span, 1e-4)  # logs: a thousandth of 69 e-folds; exponents 1e-4
    near_lower = theta <= lower + margin
    near_upper = (theta >= upper + ALPHA_SLACK) | ((span > 10) & (theta >= upper - margin))
    return near_lower | near_upper


def _covariance(jac: np.ndarray, variance: float) -> np.ndarray:
    """Return the covariance of the fit coordinates, s^2 (J^T J)^-1."""
    # Unit columns first: a resistance fitted towards zero (R0 next to an arc above the sweep) has
    # a near-zero log-derivative, and without this pinv would drop it, and with it its correlation
    # with the arc's resistance, and report that resistance far too certain.
    scale = np.linalg.norm(jac, axis=0)
    scale[scale == 0] = 1.0
    return np.linalg.pinv((jac / scale).T @ (jac / scale)) / np.outer(scale, scale) * variance


# ---- starting values from the DRT --------------------------------------------------------------

def initial_guess(circuit: Circuit, frequencies, z) -> np.ndarray:
    """Return the first starting values for ``circuit`` read off the spectrum's DRT, natural units.

    :func:`fit_spectrum` tries every start of :func:`_starts`; this is the first, for callers that
    want one (impedance.py in the benchmark).
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(z, dtype=complex)
    return _starts(circuit, f, z, drt(f, z, spur=circuit is BLOCKING))[0]


def _starts(circuit: Circuit, f: np.ndarray, z: np.ndarray, distribution: DRTResult) -> list[np.ndarray]:
    """Return starting values for ``circuit``: each way of grouping the DRT's peaks into its arcs."""
    omega = 2 * np.pi * f
    peaks = distribution.peaks()
    if len(peaks) > MAX_PEAKS:  # keep the largest, in their order
        keep = sorted(sorted(range(len(peaks)), key=lambda k: -peaks[k][0])[:MAX_PEAKS])
        peaks = [peaks[k] for k in keep]
    total = sum(r for r, _ in peaks) or float(np.abs(z).max())
    r_inf = distribution.r_inf
    if circuit is BLOCKING:
        spur_q, spur_alpha = _spur(omega, z)
        bulk = [p for p in peaks if p[1] < 1 / omega[np.argmin(-z.imag)]] or [(0.5 * max(r_inf, total), 0.3 / omega.max())]
        r1 = sum(r for r, _ in bulk)
        tau1 = np.exp(sum(r * np.log(t) for r, t in bulk) / r1)
        return [np.array([max(r_inf, 1e-3 * r1), r1, tau1**ALPHA_BULK / r1, ALPHA_BULK, spur_q, spur_alpha])]
    arcs = {BULK_INTERFACE: 2, THREE_ARCS: 3, SHORTED: 2}[circuit]
    out = []
    for groups in _groupings(peaks, arcs, r_inf, total, omega):
        r0 = max(r_inf, 1e-3 * groups[0][0])
        values = [r0]
        for k, (r, tau) in enumerate(groups):
            alpha = ALPHA_BULK if k == 0 else ALPHA_INTERFACE
            values += [r, tau**alpha / r, alpha]
        if circuit is SHORTED:
            r_dc = float(z.real[np.argmin(f)]) - r0
            values.insert(1, max(r_dc, 1e-3 * total))
        out.append(np.array(values))
    return out


def _groupings(peaks, arcs: int, r_inf: float, total: float, omega: np.ndarray):
    """Yield the peaks split into ``arcs`` consecutive groups, each as (R, tau); missing arcs are
    added small: a fast one at the top of the sweep (a bulk arc beyond it hides in R_inf)."""
    peaks = list(peaks)
    while len(peaks) < arcs:
        if not peaks or peaks[0][1] > 1 / omega.max():
            peaks.insert(0, (max(0.5 * r_inf, 1e-2 * total), 0.3 / omega.max()))
        else:  # a small arc between the fastest and the next
            nxt = peaks[1][1] if len(peaks) > 1 else 10 / omega.min()
            peaks.insert(1, (1e-2 * total, float(np.sqrt(peaks[0][1] * nxt))))
    for cuts in itertools.combinations(range(1, len(peaks)), arcs - 1):
        groups = []
        for lo, hi in zip((0, *cuts), (*cuts, len(peaks))):
            r = sum(p[0] for p in peaks[lo:hi])
            groups.append((r, float(np.exp(sum(p[0] * np.log(p[1]) for p in peaks[lo:hi]) / r))))
        yield groups


def _spur(omega: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Return Q and alpha of a blocking cell's spur from its three lowest frequencies."""
    low = np.argsort(omega)[:3]  # -Z'' = sin(a pi/2) / (Q omega^a) on the spur
    y = np.abs(z.imag[low])
    alpha = float(np.clip(-np.polyfit(np.log(omega[low]), np.log(y), 1)[0], 0.5, 1.0))
    return np.sin(alpha * np.pi / 2) / (y[0] * omega[low[0]] ** alpha), alpha
