"""A seeded, randomised corpus of synthetic spectra with known parameters, and how to score fits of it.

Used by the fit benchmark (``tests/benchmarks/bench_fit.py``, hundreds of spectra) and the property
test (``test_fit_corpus.py``, a fast subset). Each spectrum is R0 + bulk arc (+ grain-boundary arc) +
interface arc with the simulator's noise (0.5 % of |Z| plus 0.05 ohm), on the sweep of the SP-200
(7 MHz - 500 mHz) or of the MTZ-35 (35 MHz - 1 Hz), 10 points per decade:

- R0 2-20 ohm; the lab file's lead resistance within +-3 % of it;
- bulk: R 500-8,000 ohm, apex 1-300 MHz (most far above the SP-200's 7 MHz), alpha 0.92-1;
- grain boundary in half the spectra: R 0.1-1 x R_bulk, apex 30-300 times below the bulk's, alpha 0.8-0.95;
- interface: R 200-80,000 ohm, apex 10 Hz - 10 kHz, alpha 0.75-0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.core.analysis import BULK_INTERFACE, THREE_ARCS

SWEEPS = {
    "SP-200": np.logspace(np.log10(7e6), np.log10(0.5), 73),
    "MTZ-35": np.logspace(np.log10(35e6), 0, 77),
}
TOLERANCE = 0.05  # a reported resistance must be within this of the truth
ROLES = ("series", "bulk", "grain_boundary", "interface", "series_bulk")


@dataclass(frozen=True)
class Spectrum:
    instrument: str
    frequencies: np.ndarray
    z: np.ndarray
    truth: dict  # role -> ohm; grain_boundary absent when the spectrum has none
    lead_resistance: float


def _arc(rng, r: float, apex_hz: float, alpha: float) -> list[float]:
    tau = 1 / (2 * np.pi * apex_hz)
    return [r, tau**alpha / r, alpha]


def loguniform(rng, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def spectrum(rng: np.random.Generator) -> Spectrum:
    """Draw one spectrum of the corpus."""
    instrument = "SP-200" if rng.random() < 0.5 else "MTZ-35"
    f = SWEEPS[instrument]
    r0 = rng.uniform(2, 20)
    r_bulk, bulk_apex = loguniform(rng, 500, 8000), loguniform(rng, 1e6, 300e6)
    bulk = _arc(rng, r_bulk, bulk_apex, rng.uniform(0.92, 1.0))
    r_int = loguniform(rng, 200, 80000)
    interface = _arc(rng, r_int, loguniform(rng, 10, 1e4), rng.uniform(0.75, 0.9))
    truth = {"series": r0, "bulk": r_bulk, "interface": r_int, "series_bulk": r0 + r_bulk}
    if rng.random() < 0.5:
        r_gb = r_bulk * loguniform(rng, 0.1, 1.0)
        gb = _arc(rng, r_gb, bulk_apex / loguniform(rng, 30, 300), rng.uniform(0.8, 0.95))
        z = THREE_ARCS.impedance([r0, *bulk, *gb, *interface], f)
        truth["grain_boundary"] = r_gb
    else:
        z = BULK_INTERFACE.impedance([r0, *bulk, *interface], f)
    scale = 0.005 * np.abs(z) / np.sqrt(2) + 0.05
    z = z + scale * (rng.normal(size=z.size) + 1j * rng.normal(size=z.size))
    return Spectrum(instrument, f, z, truth, lead_resistance=r0 * rng.uniform(0.97, 1.03))


def corpus(n: int, seed: int = 0) -> list[Spectrum]:
    rng = np.random.default_rng(seed)
    return [spectrum(rng) for _ in range(n)]


def score(spec: Spectrum, reported: dict) -> dict:
    """Compare one fit's reported values with the truth.

    ``reported`` maps role -> (value, one-sigma error); a value of nan is "not determined". A role
    reported but absent from the truth (a grain boundary the spectrum has not) counts as wrong.

    Returns ``ok`` (every reported value within TOLERANCE), per-role relative ``errors`` and
    ``covered`` (truth within 2 sigma) of what was reported, and ``determined`` per role.
    """
    errors, covered, determined, ok = {}, {}, {}, True
    for role, (value, sigma) in reported.items():
        determined[role] = bool(np.isfinite(value))
        if not determined[role]:
            continue
        truth = spec.truth.get(role)
        if truth is None:
            ok = False
            continue
        errors[role] = abs(value / truth - 1)
        covered[role] = bool(abs(value - truth) <= 2 * sigma)
        ok &= errors[role] <= TOLERANCE
    return {"ok": ok, "errors": errors, "covered": covered, "determined": determined}
