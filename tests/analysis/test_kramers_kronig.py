"""The linear Kramers-Kronig check accepts spectra of a stationary cell and rejects changed ones."""

import numpy as np
import pytest

from labctl.core.analysis import BLOCKING, BULK_INTERFACE, linear_kk

PLATING = [5, 3100, 11.2e-12, 1.0, 16000, 1.4e-7, 0.85]


@pytest.mark.parametrize("seed", range(5))
def test_stationary_cell_is_valid_to_its_noise(seed, frequencies, noisy):
    result = linear_kk(frequencies, noisy(BULK_INTERFACE.impedance(PLATING, frequencies), seed))
    assert result.valid
    assert result.residual_rms < 0.005  # the noise, 0.5 % of |Z| over two components
    assert 1 < result.elements < 50  # mu stopped it before over-fitting


def test_exact_spectrum_is_reproduced(frequencies):
    z = BULK_INTERFACE.impedance(PLATING, frequencies)
    assert linear_kk(frequencies, z).residual_rms < 1e-3


def test_soft_short_during_the_sweep_is_invalid(frequencies, noisy):
    z = BULK_INTERFACE.impedance(PLATING, frequencies)
    # 3 kohm appears across the cell from the 41st frequency (about 1 kHz) on.
    changed = np.where(np.arange(frequencies.size) >= 40, 1 / (1 / z + 1 / 3000), z)
    result = linear_kk(frequencies, noisy(changed, 0))
    assert not result.valid
    assert result.residual_rms > 0.05


def test_interface_drifting_during_the_sweep_is_invalid(frequencies, noisy):
    # The interface resistance doubles from the first frequency to the last.
    z = np.array([BULK_INTERFACE.impedance([*PLATING[:4], PLATING[4] * (1 + share), *PLATING[5:]], [f])[0]
                  for f, share in zip(frequencies, np.linspace(0, 1, frequencies.size))])
    assert not linear_kk(frequencies, noisy(z, 0)).valid


def test_blocking_cell_needs_the_series_capacitance(frequencies, noisy):
    z = noisy(BLOCKING.impedance([5, 3100, 11.2e-12, 1.0, 1.57e-7, 0.9], frequencies), 0)
    assert linear_kk(frequencies, z, capacitance=True).valid
    assert not linear_kk(frequencies, z).valid
