"""labctl's DRT against pyDRTtools (Ciucci's group; ridge regression, GCV) on RC circuits whose DRT is
known: a peak at tau = RC of area R for each element. Prints peak positions and areas side by side,
and the time per spectrum. pyDRTtools needs cvxopt and scikit-learn; its GUI (PyQt5) is not used.

Run it with ``python tests/benchmarks/bench_drt.py`` or ``python -m pytest -m benchmark -s tests/benchmarks/bench_drt.py``.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
import types

import numpy as np
import pytest

from labctl.core.analysis import drt

FREQUENCIES = np.logspace(np.log10(7e6), np.log10(0.5), 73)
CIRCUITS = {  # (R ohm, tau s) of each RC element; R0 = 5 ohm
    "bulk + interface": [(3000, 3e-8), (16000, 1.6e-3)],
    "small bulk beside a large interface": [(700, 1.4e-8), (50000, 5e-2)],
    "bulk + grain boundary + interface": [(1000, 1e-8), (300, 9e-7), (20000, 2e-2)],
}


def spectrum(elements, seed=0):
    omega = 2 * np.pi * FREQUENCIES
    z = 5 + sum(r / (1 + 1j * omega * tau) for r, tau in elements)
    rng = np.random.default_rng(seed)
    return z + 0.005 * np.abs(z) / np.sqrt(2) * (rng.normal(size=z.size) + 1j * rng.normal(size=z.size))


def peaks_of(tau, gamma_density, n):
    """Split a density g(ln tau) at the minima between its n largest peaks; return (R, tau) per part."""
    from scipy.signal import find_peaks
    g = np.clip(gamma_density, 0, None)
    found, props = find_peaks(np.pad(g, 1), prominence=1e-3 * g.max())
    found = np.sort(found[np.argsort(props["prominences"])[::-1][:n]] - 1)
    edges = [0, *(a + int(np.argmin(g[a:b + 1])) for a, b in zip(found[:-1], found[1:])), g.size]
    dln = np.gradient(np.log(tau))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        area = float(np.sum(g[lo:hi] * dln[lo:hi]))
        out.append((area, float(np.exp(np.sum(g[lo:hi] * dln[lo:hi] * np.log(tau[lo:hi])) / max(area, 1e-300)))))
    return out


def labctl_drt(z, n):
    result = drt(FREQUENCIES, z)
    return peaks_of(result.tau, result.gamma, n)


def pydrttools_drt(z, n):
    # Its package __init__ imports its Qt GUI and command line; neither is used here, so empty
    # modules stand in for them rather than install PyQt5.
    for name in ("pyDRTtools.cli", "pyDRTtools.GUI", "pyDRTtools.layout"):
        sys.modules.setdefault(name, types.ModuleType(name))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints on import and while it runs
        from pyDRTtools.runs import EIS_object, simple_run
        order = np.argsort(FREQUENCIES)[::-1]  # high to low, as its own examples
        entry = EIS_object(FREQUENCIES[order], z.real[order], z.imag[order])
        entry = simple_run(entry, rbf_type="Gaussian", data_used="Combined Re-Im Data", induct_used=1,
                           der_used="2nd order", cv_type="GCV")
    return peaks_of(np.asarray(entry.out_tau_vec), np.asarray(entry.gamma), n)


def run_benchmark():
    rows = []
    for name, elements in CIRCUITS.items():
        z = spectrum(elements)
        for label, method in (("labctl", labctl_drt), ("pyDRTtools", pydrttools_drt)):
            t0 = time.perf_counter()
            peaks = method(z, len(elements))
            rows.append((name, label, 1e3 * (time.perf_counter() - t0), peaks, elements))
    return rows


def report(rows) -> str:
    lines = ["RC circuits, 73 frequencies 7 MHz - 0.5 Hz, 0.5 % noise: peaks (R ohm @ tau s), truth in brackets"]
    for name, label, ms, peaks, elements in rows:
        shown = "  ".join(f"{r:.0f}@{t:.2g} [{rt}@{tt:.2g}]" for (r, t), (rt, tt) in zip(peaks, elements))
        lines.append(f"{name:38s} {label:11s} {ms:8.1f} ms  {shown}")
    return "\n".join(lines)


@pytest.mark.benchmark
def test_drt_benchmark():
    pytest.importorskip("pyDRTtools")
    print("\n" + report(run_benchmark()))


if __name__ == "__main__":
    print(report(run_benchmark()))
    sys.exit(0)
