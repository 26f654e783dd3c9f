"""The distribution of relaxation times on circuits whose DRT is known: RC elements give peaks at
tau = RC with area R; the regularisation is chosen per spectrum, and the noise it reports is the
spectrum's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.analysis import drt
from labctl.core.analysis.drt import POINTS

FREQUENCIES = np.logspace(np.log10(7e6), np.log10(0.5), 73)


def rc_spectrum(elements, r0=5.0):
    omega = 2 * np.pi * FREQUENCIES
    return r0 + sum(r / (1 + 1j * omega * tau) for r, tau in elements)


def with_noise(z, seed, relative=0.005):
    rng = np.random.default_rng(seed)
    return z + relative * np.abs(z) / np.sqrt(2) * (rng.normal(size=z.size) + 1j * rng.normal(size=z.size))


@settings(max_examples=25, deadline=None)
@given(
    log_r=st.lists(st.floats(np.log(300), np.log(80000)), min_size=2, max_size=3),
    first_tau=st.floats(np.log(3e-8), np.log(1e-6)),
    spacing=st.floats(np.log(100), np.log(3000)),
    seed=st.integers(0, 2**16),
)
def test_rc_elements_give_peaks_at_rc_with_area_r(log_r, first_tau, spacing, seed):
    """Two or three RC elements two to three and a half decades apart, inside the sweep, 0.5 % noise;
    each holding 2 % of the total resistance or more is found."""
    elements = [(float(np.exp(r)), float(np.exp(first_tau + k * spacing))) for k, r in enumerate(log_r)]
    elements = [(r, tau) for r, tau in elements if tau < 0.3 / (2 * np.pi * FREQUENCIES.min())]
    result = drt(FREQUENCIES, with_noise(rc_spectrum(elements), seed))
    peaks = result.peaks(min_share=0.005)
    total = sum(r for r, _ in elements)
    seen = [(r, tau) for r, tau in elements if r >= 0.02 * total]  # smaller ones are within the noise's reach
    assert len(peaks) >= len(seen)
    for r, tau in seen:  # each element is matched by the peak nearest its tau
        area, centre = min(peaks, key=lambda p: abs(np.log(p[1] / tau)))
        assert abs(np.log10(centre / tau)) < 0.25  # within a quarter decade (a small peak beside a big one shifts)
        assert area == pytest.approx(r, abs=0.03 * total)
    assert result.tau.size == result.resistance.size == POINTS  # one shape for every spectrum


def test_noise_level_is_the_spectrums_own():
    elements = [(3000, 3e-8), (16000, 1.6e-3)]
    for relative in (0.001, 0.005, 0.02):
        estimates = [drt(FREQUENCIES, with_noise(rc_spectrum(elements), seed, relative)).noise for seed in range(5)]
        # relative * |Z| spread over real and imaginary parts: relative / sqrt(2) in each
        assert np.median(estimates) == pytest.approx(relative / np.sqrt(2), rel=0.2)


def test_regularisation_is_chosen_per_spectrum():
    clean = drt(FREQUENCIES, with_noise(rc_spectrum([(3000, 3e-8), (16000, 1.6e-3)]), 0, 1e-4))
    noisy = drt(FREQUENCIES, with_noise(rc_spectrum([(3000, 3e-8), (16000, 1.6e-3)]), 0, 0.03))
    assert noisy.regularisation > clean.regularisation  # more noise, more smoothing


def test_a_blocking_spur_goes_to_the_series_capacitance():
    omega = 2 * np.pi * FREQUENCIES
    z = 5 + 3000 / (1 + 1j * omega * 3e-8) + 1 / (1j * omega * 1.5e-7)
    result = drt(FREQUENCIES, with_noise(z, 1), spur=True)
    (area, centre), *_ = result.peaks()
    assert area == pytest.approx(3000, rel=0.03) and abs(np.log10(centre / 3e-8)) < 0.15
    assert result.noise < 0.006
