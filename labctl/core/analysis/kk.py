"""Linear Kramers-Kronig validity check (Schönleber et al., Electrochim. Acta 131 (2014) 20-27).

A spectrum that a causal, linear, stationary system produced can be reproduced by a series of
resistor and RC elements with fixed time constants. The element resistances enter linearly, so the
fit is one weighted linear least-squares solve; the number of elements grows until the fit starts
to need negative resistances to chase noise (Schönleber's mu criterion). Residuals well above the
noise, or with structure, mean the cell changed during the sweep (drift) or the response was not
linear, and an equivalent-circuit fit of that spectrum should not be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KKResult:
    """The outcome of a linear KK test.

    Parameters
    ----------
    elements : int
        Number of RC elements used, M.
    mu : float
        Schönleber's mu = 1 - (sum of negative R_k) / (sum of positive R_k) at M.
    z_fit : numpy.ndarray
        The KK-compliant fit at the measured frequencies, ohm.
    residuals : numpy.ndarray
        (Z - Z_fit) / |Z|, complex: real and imaginary relative residuals.
    residual_rms : float
        rms of the real and imaginary relative residuals.
    valid : bool
        ``residual_rms`` at most the threshold the test was run with.
    """

    elements: int
    mu: float
    z_fit: np.ndarray
    residuals: np.ndarray
    residual_rms: float
    valid: bool


def linear_kk(frequencies, z, *, mu_cutoff: float = 0.85, max_elements: int = 50, capacitance: bool = False,
              threshold: float = 0.01) -> KKResult:
    """Test a spectrum for Kramers-Kronig compliance.

    Parameters
    ----------
    frequencies : array_like
        Frequencies, Hz.
    z : array_like of complex
        Impedance, ohm.
    mu_cutoff : float
        Stop adding elements once mu falls below this (Schönleber's 0.85).
    max_elements : int
        At most this many RC elements.
    capacitance : bool
        Add a series capacitance, for spectra without a low-frequency intercept (blocking cells).
    threshold : float
        Largest rms relative residual (fraction of |Z|) still called valid. The default 0.01 is
        about three times the simulator's noise of 0.5 % of |Z|.

    Returns
    -------
    KKResult
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(z, dtype=complex)
    for m in range(1, max_elements + 1):
        coefficients, columns = _solve(f, z, m, capacitance)
        rc = coefficients[1:m + 1]
        mu = 1 - np.abs(rc[rc < 0]).sum() / max(rc[rc >= 0].sum(), 1e-300)
        if mu < mu_cutoff:
            break
    z_fit = columns @ coefficients
    residuals = (z - z_fit) / np.abs(z)
    rms = float(np.sqrt(np.mean(np.concatenate([residuals.real, residuals.imag]) ** 2)))
    return KKResult(elements=m, mu=float(mu), z_fit=z_fit, residuals=residuals, residual_rms=rms,
                    valid=rms <= threshold)


def _solve(f: np.ndarray, z: np.ndarray, m: int, capacitance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the element values and the complex design matrix for ``m`` RC elements."""
    omega = 2 * np.pi * f
    # Schönleber's time constants: 1/omega_max to 1/omega_min, evenly in log (one element: the first).
    if m == 1:
        taus = 1 / omega.max(keepdims=True)
    else:
        taus = np.logspace(np.log10(1 / omega.max()), np.log10(1 / omega.min()), m)
    columns = [np.ones_like(omega, dtype=complex)]  # series resistance
    columns += [1 / (1 + 1j * omega * tau) for tau in taus]
    columns.append(1j * omega)  # series inductance of leads and fixture
    if capacitance:
        columns.append(-1j / omega)  # 1/C as the unknown keeps the problem linear
    a = np.stack(columns, axis=1)
    weight = 1 / np.abs(z)
    stacked = np.concatenate([(a.real * weight[:, None]), (a.imag * weight[:, None])])
    target = np.concatenate([z.real * weight, z.imag * weight])
    coefficients = np.linalg.lstsq(stacked, target, rcond=None)[0]
    return coefficients, a
