"""Distribution of relaxation times (DRT) by Tikhonov regularisation, its strength chosen by GCV.

A causal, linear spectrum is a series resistance plus a continuum of RC elements,
Z(w) = R_inf + sum_k R_k / (1 + j w tau_k), on a fixed grid of time constants reaching a decade
beyond the sweep at both ends (a blocking cell's spur adds a series capacitance). The R_k solve a
linear least-squares problem, weighted by 1/|Z| as the fit is, that is ill-posed, so it is
regularised: minimise |A x - b|^2 + lambda |L x|^2, L the second difference along ln tau, with
x >= 0. The strength lambda is chosen per spectrum by
generalised cross-validation (Golub, Heath & Wahba 1979), from one SVD, so no lambda is tuned by
hand. An RC element R, C shows as a peak at tau = RC whose area (the sum of R_k over the peak) is R.

The residual of this fit is a Kramers-Kronig residual: the DRT model is KK-compliant by
construction, so what it cannot reproduce is noise (or drift). Divided by its effective degrees of
freedom it is the spectrum's own noise level, against which an equivalent-circuit fit is judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import nnls

POINTS = 64  # grid size: fixed, so the DRT arrays stored with each fit have one shape
LAMBDAS = np.logspace(-9, 0, 46)  # candidate strengths, relative to the largest RC column's norm squared
SERIES_PENALTY = 1e-3  # R_inf and 1/C are penalised this much less than the R_k: barely at all


@dataclass(frozen=True)
class DRTResult:
    """A spectrum's distribution of relaxation times.

    Parameters
    ----------
    tau : numpy.ndarray
        Time constants, s, log-spaced, ``POINTS`` of them.
    resistance : numpy.ndarray
        R_k, ohm, the resistance at each time constant (its sum over a peak is the arc's R).
    r_inf : float
        Series resistance, ohm.
    regularisation : float
        The lambda GCV chose (relative to the largest RC column's norm squared).
    noise : float
        rms relative residual per component, corrected for the degrees of freedom the
        regularised fit used: the spectrum's noise level as a KK test sees it.
    """

    tau: np.ndarray
    resistance: np.ndarray
    r_inf: float
    regularisation: float
    noise: float

    @property
    def gamma(self) -> np.ndarray:
        """Return the density g(ln tau) = R_k / d(ln tau), ohm, for drawing."""
        return self.resistance / np.log(self.tau[1] / self.tau[0])

    def peaks(self, min_share: float = 0.002) -> list[tuple[float, float]]:
        """Return (R, tau) of each peak, fastest first.

        The distribution (negative parts dropped) is split at the lowest point between adjacent
        peaks; each part's R is its sum and its tau the R-weighted mean of ln tau. Parts holding less
        than ``min_share`` of the total resistance are noise and dropped.
        """
        from scipy.signal import find_peaks  # here, not at import: scipy.signal costs ~0.1 s to import

        r = np.clip(self.resistance, 0, None)
        total = r.sum()
        if total <= 0:
            return []
        found, _ = find_peaks(np.pad(r, 1), prominence=1e-3 * r.max())
        found = found - 1
        if found.size == 0:
            return []
        edges = [0]
        for left, right in zip(found[:-1], found[1:]):
            edges.append(left + int(np.argmin(r[left:right + 1])) + 1)
        edges.append(r.size)
        out = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            area = r[lo:hi].sum()
            if area >= min_share * total:
                out.append((float(area), float(np.exp(r[lo:hi] @ np.log(self.tau[lo:hi]) / area))))
        return out


def tau_grid(frequencies, points: int = POINTS) -> np.ndarray:
    """Return the time-constant grid for a sweep: 0.1/w_max to 10/w_min, log-spaced."""
    omega = 2 * np.pi * np.asarray(frequencies, dtype=float)
    return np.logspace(np.log10(0.1 / omega.max()), np.log10(10 / omega.min()), points)


def drt(frequencies, z, *, spur: bool = False, points: int = POINTS) -> DRTResult:
    """Return the Tikhonov-regularised DRT of a spectrum, lambda by generalised cross-validation.

    Parameters
    ----------
    frequencies : array_like
        Frequencies, Hz.
    z : array_like of complex
        Impedance, ohm.
    spur : bool
        Add a series capacitance (a blocking cell's low-frequency spur).
    points : int
        Grid size.
    """
    f = np.asarray(frequencies, dtype=float)
    z = np.asarray(z, dtype=complex)
    tau, kernel = _kernel(f.tobytes(), points, spur)
    weight = 1 / np.abs(z)
    a = kernel * weight[:, None]
    a = np.concatenate([a.real, a.imag])
    b = np.concatenate([(z * weight).real, (z * weight).imag])
    penalty = _penalty(a, points)
    # Standard form M = A P^-1 (P square and invertible). The GCV score of every lambda follows from
    # the eigen-decomposition of M^T M (the squared singular values of M): a 66 x 66 problem instead
    # of an SVD of the 146 x 66 M. Squaring loses only singular values far below any lambda tried.
    m = a @ np.linalg.inv(penalty)
    s2, v = np.linalg.eigh(m.T @ m)
    s2 = np.clip(s2, 0.0, None)
    g2 = (v.T @ (m.T @ b)) ** 2  # (s_i beta_i)^2, beta = U^T b
    n = b.size
    reference = np.max(np.linalg.norm(a[:, 1:1 + points], axis=0)) ** 2
    lams = LAMBDAS[:, None] * reference
    denominator = s2 + lams
    rss = np.clip(b @ b - np.sum(g2 * (2 / denominator - s2 / denominator**2), axis=1), 0.0, None)
    dof = np.sum(s2 / denominator, axis=1)
    best = int(np.argmin(n * rss / np.maximum(n - dof, 1.0) ** 2))
    lam = lams[best, 0]
    # At that lambda, the non-negative solution: a distribution of resistances has no negative parts,
    # and without them it has no ringing either.
    x = nnls(np.concatenate([a, np.sqrt(lam) * penalty]), np.concatenate([b, np.zeros(penalty.shape[0])]),
             maxiter=20 * a.shape[1])[0]
    return DRTResult(
        tau=tau, resistance=x[1:1 + points], r_inf=float(x[0]), regularisation=float(lam / reference),
        noise=float(np.sqrt(rss[best] / max(n - dof[best], 1.0))),
    )


@lru_cache(maxsize=16)  # a lab sweeps the same few frequency grids again and again
def _kernel(frequencies: bytes, points: int, spur: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the tau grid and the complex design matrix [1, 1/(1 + j w tau_k), (-j/w)] of a sweep."""
    omega = 2 * np.pi * np.frombuffer(frequencies)
    tau = tau_grid(omega / (2 * np.pi), points)
    columns = [np.ones_like(omega, dtype=complex), *(1 / (1 + 1j * omega[:, None] * tau)).T]
    if spur:
        columns.append(-1j / omega)
    kernel = np.stack(columns, axis=1)
    kernel.flags.writeable = tau.flags.writeable = False  # shared between calls
    return tau, kernel


def _penalty(a: np.ndarray, points: int) -> np.ndarray:
    """Return the square penalty matrix: the second difference of the R_k (zero beyond the grid's
    ends, so it is invertible), and a token penalty on R_inf and 1/C on the scale of their columns."""
    size = a.shape[1]
    penalty = np.zeros((size, size))
    rc = slice(1, 1 + points)
    penalty[rc, rc] = -2 * np.eye(points) + np.eye(points, k=1) + np.eye(points, k=-1)
    norms = np.linalg.norm(a, axis=0)
    for k in [0, *range(1 + points, size)]:
        penalty[k, k] = SERIES_PENALTY * norms[k] / max(norms[1:1 + points].max(), 1e-300)
    return penalty
