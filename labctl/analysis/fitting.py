"""Fit an equivalent circuit to one impedance spectrum, from the spectrum's own shape.

The fit is weighted least squares on (Z_model - Z) / |Z| (modulus weighting: every point counts by
its relative error, as the instrument's noise is a fraction of |Z|), in log-parameters, with the
circuit's analytic Jacobian, through ``scipy.optimize.least_squares``. Initial guesses are read off
the spectrum: the high-frequency intercept, and each arc's size and apex frequency (see
:func:`initial_guess`). A spectrum of the same run can instead start from the previous fit (warm
start), which is faster and follows slow changes without jumping between arcs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, nnls
from scipy.signal import find_peaks

from labctl.analysis.circuits import BLOCKING, BULK_INTERFACE, SHORTED, Circuit

ALPHA_BULK, ALPHA_INTERFACE = 0.95, 0.85  # typical exponents: only starting points
PER_DECADE = 4  # time constants per decade in the decomposition behind the initial guess
OHM_M2_TO_OHM_CM2 = 1e4
# An ideal capacitor (the bulk arc) fits to alpha = 1 within the noise, on either side; accept up to
# this much above 1 as that rather than pay for a bounded fit.
ALPHA_SLACK = 0.02


@dataclass(frozen=True)
class FitResult:
    """One fitted spectrum.

    Parameters
    ----------
    circuit : Circuit
        The circuit fitted.
    params, errors : numpy.ndarray
        Fitted values and their one-sigma uncertainties from the Jacobian, in natural units (ohm,
        F s^(alpha-1), dimensionless), in ``circuit.parameters`` order.
    residual_rms : float
        Goodness of fit: rms of the relative residuals (Z_fit - Z) / |Z| over real and imaginary
        parts. About 0.0035 for the simulator's 0.5 % noise; much more means the circuit is wrong.
    success : bool
        Whether the optimiser reported convergence.
    evaluations : int
        Model evaluations used.
    """

    circuit: Circuit
    params: np.ndarray
    errors: np.ndarray
    residual_rms: float
    success: bool
    evaluations: int

    def value(self, name: str) -> float:
        """Get a parameter (``"R1"``) or a role (``"bulk"``) by name."""
        name = self.circuit.roles.get(name, name)
        return float(self.params[self.circuit.parameters.index(name)])

    def error(self, name: str) -> float:
        """Get a parameter's or a role's one-sigma uncertainty by name."""
        name = self.circuit.roles.get(name, name)
        return float(self.errors[self.circuit.parameters.index(name)])

    def impedance(self, frequencies) -> np.ndarray:
        """Return the fitted model's Z (ohm) at ``frequencies`` (Hz)."""
        return self.circuit.impedance(self.params, frequencies)

    def summary(self, area: float | None = None) -> dict[str, float]:
        """Return flat, storable values: every parameter and role with its uncertainty.

        Parameters
        ----------
        area : float, optional
            Electrode area, m^2. When given, each role's resistance is also given area-specific,
            ``asr_<role>`` in ohm cm^2.

        Returns
        -------
        dict
            ``R0``, ``R0_err``, ... (natural units), ``r_<role>`` and ``r_<role>_err`` in ohm,
            ``asr_<role>`` and ``asr_<role>_err`` in ohm cm^2, and ``residual_rms``.
        """
        out = {}
        for name, value, error in zip(self.circuit.parameters, self.params, self.errors):
            out[name], out[f"{name}_err"] = float(value), float(error)
        for role in self.circuit.roles:
            out[f"r_{role}"], out[f"r_{role}_err"] = self.value(role), self.error(role)
            if area is not None:
                out[f"asr_{role}"] = self.value(role) * area * OHM_M2_TO_OHM_CM2
                out[f"asr_{role}_err"] = self.error(role) * area * OHM_M2_TO_OHM_CM2
        out["residual_rms"] = self.residual_rms
        return out


def fit_spectrum(frequencies, z, circuit: Circuit = BULK_INTERFACE, *, previous: FitResult | None = None,
                 guess=None) -> FitResult:
    """Fit ``circuit`` to a spectrum.

    Parameters
    ----------
    frequencies : array_like
        Frequencies, Hz, in any order.
    z : array_like of complex
        Measured impedance, ohm (Z' + j Z'', Z'' negative for a capacitive arc).
    circuit : Circuit
        The equivalent circuit (default: bulk and interface arcs).
    previous : FitResult, optional
        The fit of the previous spectrum of the same cell: start from its values (warm start). If
        that fits clearly worse than the previous spectrum did, the fit is repeated from the
        spectrum's own guess and the better of the two kept.
    guess : array_like, optional
        Explicit starting values in natural units; overrides both.

    Returns
    -------
    FitResult
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(z, dtype=complex)
    if guess is not None:
        return _least_squares(circuit, f, z, np.asarray(guess, dtype=float))
    if previous is None or previous.circuit is not circuit:
        return _least_squares(circuit, f, z, initial_guess(circuit, f, z))
    warm = _least_squares(circuit, f, z, previous.params)
    if warm.success and warm.residual_rms <= 2 * max(previous.residual_rms, 1e-3):
        return warm
    cold = _least_squares(circuit, f, z, initial_guess(circuit, f, z))
    return cold if cold.residual_rms < warm.residual_rms else warm


def _least_squares(circuit: Circuit, f: np.ndarray, z: np.ndarray, start: np.ndarray) -> FitResult:
    omega = 2 * np.pi * f
    weight = 1 / np.abs(z)
    cache = {}

    def model(theta):
        key = theta.tobytes()
        if key not in cache:  # least_squares asks for residuals and Jacobian at the same point
            cache.clear()
            cache[key] = circuit.evaluate(circuit.from_fit(theta), omega)
        return cache[key]

    def residuals(theta):
        r = (model(theta)[0] - z) * weight
        return np.concatenate([r.real, r.imag])

    def jacobian(theta):
        d = model(theta)[1] * weight
        return np.concatenate([d.real, d.imag], axis=1).T

    lower, upper = circuit.bounds()
    theta0 = np.clip(circuit.to_fit(start), lower + 1e-9, upper - 1e-9)
    # Levenberg-Marquardt (MINPACK) needs a third of the time of the bounded trust-region method,
    # which crawls along alpha = 1 when an arc is an ideal capacitor. Only if LM leaves the
    # physical range is the fit redone with bounds, from where LM got to.
    result = least_squares(residuals, theta0, jac=jacobian, method="lm")
    evaluations = result.nfev
    if not _physical(circuit, result.x):
        theta1 = np.clip(result.x, lower + 1e-9, upper - 1e-9) if np.all(np.isfinite(result.x)) else theta0
        result = least_squares(residuals, theta1, jac=jacobian, bounds=(lower, upper), method="trf")
        evaluations += result.nfev
    params = circuit.from_fit(result.x)
    dof = max(result.fun.size - result.x.size, 1)
    sigma_theta = _uncertainties(result.jac, 2 * result.cost / dof)
    errors = np.where(circuit.is_log, params * sigma_theta, sigma_theta)
    if circuit is BULK_INTERFACE:
        params, errors = _faster_first(params), _faster_first(params, errors)
    return FitResult(
        circuit=circuit, params=params, errors=errors,
        residual_rms=float(np.sqrt(np.mean(result.fun**2))), success=bool(result.success),
        evaluations=int(evaluations),
    )


def _faster_first(params: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Return ``values`` (default ``params``) with the two arcs ordered by time constant.

    R0-p(R1,CPE1)-p(R2,CPE2) is the same circuit with its arcs swapped, and a fit may land on
    either labelling; the bulk arc is the faster one (MHz against Hz to kHz).
    """
    values = params if values is None else values
    tau1 = (params[1] * params[2]) ** (1 / params[3])
    tau2 = (params[4] * params[5]) ** (1 / params[6])
    return values if tau1 <= tau2 else values[[0, 4, 5, 6, 1, 2, 3]]


def _physical(circuit: Circuit, theta: np.ndarray) -> bool:
    """Say whether fit coordinates are finite and within bounds, CPE exponents up to ALPHA_SLACK."""
    lower, upper = circuit.bounds()
    upper = np.where(circuit.is_log, upper, upper + ALPHA_SLACK)
    return bool(np.all(np.isfinite(theta)) and np.all(theta >= lower) and np.all(theta <= upper))


def _uncertainties(jac: np.ndarray, variance: float) -> np.ndarray:
    """Return one-sigma errors of the fit coordinates: sqrt(diag(s^2 (J^T J)^-1))."""
    # Unit columns first: a resistance fitted towards zero (R0 next to an arc above the sweep) has
    # a near-zero log-derivative, and without this pinv would drop it, and with it its correlation
    # with the arc's resistance, and report that resistance far too certain.
    scale = np.linalg.norm(jac, axis=0)
    scale[scale == 0] = 1.0
    covariance = np.linalg.pinv((jac / scale).T @ (jac / scale)) / np.outer(scale, scale) * variance
    return np.sqrt(np.clip(np.diag(covariance), 0.0, None))


# ---- initial guesses from the spectrum ---------------------------------------------------------

def initial_guess(circuit: Circuit, frequencies, z) -> np.ndarray:
    """Return starting values for ``circuit`` read off the spectrum, natural units.

    The spectrum is first decomposed, by non-negative least squares, into a series resistance (the
    high-frequency intercept) and RC elements on a fixed grid of time constants reaching a decade
    beyond the sweep at both ends: a coarse distribution of relaxation times. Its two most
    prominent peaks are the arcs; they are split at the lowest point between them, each arc's
    resistance is the sum on its side and its apex frequency 1/tau the weighted centre. Unlike
    peak-picking on -Z'' this sees a small interface arc beside a large bulk arc, and an arc whose
    apex lies above the highest frequency still gets its size from the part inside the sweep.
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(z, dtype=complex)
    omega = 2 * np.pi * f
    r0, taus, r = _distribution(omega, z, spur=circuit is BLOCKING)
    if circuit is BLOCKING:  # the bulk arc is all that relaxes faster than the valley before the spur
        bulk = taus < 1 / omega[np.argmin(-z.imag)]
        r1 = max(r[bulk].sum(), 1e-300)
        tau1 = np.exp(r[bulk] @ np.log(taus[bulk]) / r1)
        return np.array([max(r0, 1e-3 * r1), r1, tau1**ALPHA_BULK / r1, ALPHA_BULK, *_spur(omega, z)])
    (r1, tau1), (r2, tau2) = _two_arcs(taus, r)
    r0 = max(r0, 1e-3 * r1)
    if circuit is BULK_INTERFACE:
        return np.array([r0, r1, tau1**ALPHA_BULK / r1, ALPHA_BULK, r2, tau2**ALPHA_INTERFACE / r2, ALPHA_INTERFACE])
    if circuit is SHORTED:
        r1, tau1 = r1 + r2, np.exp((r1 * np.log(tau1) + r2 * np.log(tau2)) / (r1 + r2))
        return np.array([r0, r1, tau1**ALPHA_INTERFACE / r1, ALPHA_INTERFACE])
    raise ValueError(f"no automatic guess for circuit {circuit.name}; pass guess=")


def _distribution(omega: np.ndarray, z: np.ndarray, spur: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the series resistance, the time-constant grid and the resistance at each (NNLS).

    With ``spur``, a series capacitance takes the low-frequency rise of a blocking cell.
    """
    taus = np.logspace(np.log10(0.1 / omega.max()), np.log10(10 / omega.min()),
                       int(np.log10(100 * omega.max() / omega.min()) * PER_DECADE) + 1)
    columns = [np.ones_like(z), *(1 / (1 + 1j * omega[:, None] * taus)).T]
    if spur:
        columns.append(-1j / omega)
    a = np.stack(columns, axis=1) / np.abs(z)[:, None]  # relative residuals, as the fit weighs them
    a = np.concatenate([a.real, a.imag])
    scale = np.linalg.norm(a, axis=0)  # unit columns: the capacitance's would dwarf the rest
    b = z / np.abs(z)
    coefficients = nnls(a / scale, np.concatenate([b.real, b.imag]))[0] / scale
    return float(coefficients[0]), taus, coefficients[1:1 + taus.size]


def _two_arcs(taus: np.ndarray, r: np.ndarray) -> list[tuple[float, float]]:
    """Return (R, tau) of the two most prominent arcs of a distribution, faster first."""
    smooth = np.convolve(r, np.ones(3) / 3, mode="same")  # NNLS scatters one arc over neighbours
    peaks, props = find_peaks(np.pad(smooth, 1), prominence=0.01 * max(smooth.max(), 1e-300))
    peaks = np.sort(peaks[np.argsort(props["prominences"])[::-1][:2]]) - 1
    if peaks.size < 2:  # one arc seen: take it for the slower one and start the other small at the top
        total = max(r.sum(), 1e-300)
        return [(1e-2 * total, float(taus[0])), (total, float(np.exp(r @ np.log(taus) / total)))]
    split = peaks[0] + int(np.argmin(smooth[peaks[0]:peaks[1] + 1]))
    arcs = []
    for side in (slice(0, split + 1), slice(split + 1, None)):
        total = max(r[side].sum(), 1e-300)
        arcs.append((float(total), float(np.exp(r[side] @ np.log(taus[side]) / total))))
    return arcs


def _spur(omega: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Return Q and alpha of a blocking cell's spur from its three lowest frequencies."""
    low = np.argsort(omega)[:3]  # -Z'' = sin(a pi/2) / (Q omega^a) on the spur
    y = -z.imag[low]
    alpha = float(np.clip(-np.polyfit(np.log(omega[low]), np.log(y), 1)[0], 0.5, 1.0))
    return np.sin(alpha * np.pi / 2) / (y[0] * omega[low[0]] ** alpha), alpha
