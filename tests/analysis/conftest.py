"""Synthetic spectra for the analysis tests: the simulator's sweep and its noise model."""

import numpy as np
import pytest

# The plating plan's sweep: 7 MHz to 500 mHz, 10 points per decade.
FREQUENCIES = np.logspace(np.log10(7e6), np.log10(0.5), 73)


def add_noise(z: np.ndarray, rng: np.random.Generator, relative: float = 0.005, floor: float = 0.05) -> np.ndarray:
    """Return ``z`` with the simulator's complex noise: ``relative`` of |Z| plus a floor in ohm."""
    scale = relative * np.abs(z) / np.sqrt(2) + floor
    return z + scale * (rng.normal(size=z.shape) + 1j * rng.normal(size=z.shape))


@pytest.fixture
def frequencies() -> np.ndarray:
    return FREQUENCIES.copy()


@pytest.fixture
def noisy():
    """``noisy(z, seed)``: ``z`` with the simulator's noise from a seeded generator."""
    return lambda z, seed: add_noise(z, np.random.default_rng(seed))
