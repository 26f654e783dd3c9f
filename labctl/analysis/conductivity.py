"""Transport numbers the protocol asks for: ionic and electronic conductivity, their temperature
dependence, and the critical current density. All inputs and outputs SI (ohm, m, m^2, S/m, K, A/m^2,
V, s, eV); 1 mS/cm is 0.1 S/m and 1 mA/cm^2 is 10 A/m^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOLTZMANN_EV = 8.617333262e-5  # eV/K


def ionic_conductivity(r_bulk, thickness: float, area: float):
    """Return the bulk ionic conductivity, S/m: sigma = L / (R_bulk A).

    Parameters
    ----------
    r_bulk : float or array_like
        Bulk resistance from the high-frequency arc, ohm.
    thickness : float
        Pellet thickness L, m.
    area : float
        Electrode area A, m^2.
    """
    return thickness / (np.asarray(r_bulk, dtype=float) * area)


@dataclass(frozen=True)
class ArrheniusFit:
    """A straight line through ln(sigma) (or ln(sigma T)) against 1/T.

    Parameters
    ----------
    activation_energy, activation_energy_err : float
        E_a and its one-sigma uncertainty from the slope's standard error, eV.
    prefactor : float
        sigma_0 in sigma = sigma_0 exp(-E_a / kT), S/m (S K/m for the ``sigma_T`` form).
    with_temperature : bool
        Whether the fitted form was sigma T = sigma_0 exp(-E_a / kT).
    """

    activation_energy: float
    activation_energy_err: float
    prefactor: float
    with_temperature: bool

    def conductivity(self, temperature):
        """Return the fitted conductivity at ``temperature`` (K), S/m."""
        t = np.asarray(temperature, dtype=float)
        sigma = self.prefactor * np.exp(-self.activation_energy / (BOLTZMANN_EV * t))
        return sigma / t if self.with_temperature else sigma


def arrhenius_fit(temperatures, conductivities, *, with_temperature: bool = False) -> ArrheniusFit:
    """Fit an Arrhenius law to conductivities measured at several temperatures.

    Parameters
    ----------
    temperatures : array_like
        Temperatures, K (at least three, for an uncertainty).
    conductivities : array_like
        Conductivities, S/m.
    with_temperature : bool
        Fit sigma T = sigma_0 exp(-E_a/kT) (hopping form) instead of sigma = sigma_0 exp(-E_a/kT).

    Returns
    -------
    ArrheniusFit
    """
    t = np.asarray(temperatures, dtype=float)
    sigma = np.asarray(conductivities, dtype=float)
    if t.size < 3:
        raise ValueError(f"an Arrhenius fit with an uncertainty needs three or more temperatures, got {t.size}")
    x = 1 / (BOLTZMANN_EV * t)
    y = np.log(sigma * t if with_temperature else sigma)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    slope_err = np.sqrt(residual @ residual / (t.size - 2) / np.sum((x - x.mean()) ** 2))
    return ArrheniusFit(
        activation_energy=float(-slope), activation_energy_err=float(slope_err),
        prefactor=float(np.exp(intercept)), with_temperature=with_temperature,
    )


def steady_current(times, currents, *, tail: float = 0.2) -> float:
    """Return the steady-state current of a DC step: the mean over the last ``tail`` of its duration.

    Parameters
    ----------
    times, currents : array_like
        The step's samples, s and A.
    tail : float
        Fraction of the step's duration, at its end, taken as steady (0 < tail <= 1).
    """
    t = np.asarray(times, dtype=float)
    i = np.asarray(currents, dtype=float)
    return float(i[t >= t[-1] - tail * (t[-1] - t[0])].mean())


def electronic_conductivity(voltage: float, current: float, thickness: float, area: float) -> float:
    """Return the electronic conductivity of a blocking cell, S/m: sigma_e = I L / (V A).

    Parameters
    ----------
    voltage : float
        The DC step applied, V.
    current : float
        The steady-state current it drives once the ionic current has decayed, A (see
        :func:`steady_current`).
    thickness, area : float
        Pellet thickness (m) and electrode area (m^2).
    """
    return current * thickness / (voltage * area)


@dataclass(frozen=True)
class CriticalCurrent:
    """Where a current staircase failed.

    Parameters
    ----------
    density : float
        The critical current density: the step during which the cell short-circuited, A/m^2.
        None if every step held.
    last_stable : float
        The highest step the cell held, A/m^2 (None if it failed on the first).
    time : float
        Time of the first short-circuited sample, s (None if none).
    """

    density: float | None
    last_stable: float | None
    time: float | None


def critical_current_density(times, current_density, voltage, *, drop: float = 0.5) -> CriticalCurrent:
    """Find the critical current density in a galvanostatic staircase.

    The cell's area-specific resistance V / j is followed step by step; the cell has shorted at the
    first sample where it falls below ``(1 - drop)`` of the median of the previous step (for the
    first step, of its own first tenth), as the voltage collapses to j A R_short.

    Parameters
    ----------
    times : array_like
        Sample times, s.
    current_density : array_like
        Applied current density at each sample, A/m^2 (either sign; steps are runs of equal value).
    voltage : array_like
        Cell voltage at each sample, V.
    drop : float
        Fractional fall of V / j that counts as a short (0.5: to half).

    Returns
    -------
    CriticalCurrent
    """
    t = np.asarray(times, dtype=float)
    j = np.asarray(current_density, dtype=float)
    asr = np.asarray(voltage, dtype=float) / np.where(j == 0, np.nan, j)
    starts = np.flatnonzero(np.concatenate([[True], j[1:] != j[:-1]]))
    ends = np.append(starts[1:], j.size)
    reference, last_stable = None, None
    for start, end in zip(starts, ends):
        if j[start] == 0:
            continue  # rests between steps carry no resistance
        step = asr[start:end]
        if reference is None:
            reference = np.median(step[: max(step.size // 10, 1)])
        failed = np.flatnonzero(step < (1 - drop) * reference)
        if failed.size:
            return CriticalCurrent(density=float(abs(j[start])), last_stable=last_stable,
                                   time=float(t[start + failed[0]]))
        last_stable, reference = float(abs(j[start])), np.median(step)
    return CriticalCurrent(density=None, last_stable=last_stable, time=None)
