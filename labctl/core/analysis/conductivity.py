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
    covariance: tuple = ((0.0, 0.0), (0.0, 0.0))  # of (slope, intercept) of ln(sigma) on 1/kT

    def conductivity_err(self, temperature):
        """Return the one-sigma uncertainty of the fitted conductivity at ``temperature`` (K), S/m,
        from the covariance of slope and intercept (so not just E_a's)."""
        x = 1 / (BOLTZMANN_EV * np.asarray(temperature, dtype=float))
        (ss, si), (_, ii) = self.covariance
        return self.conductivity(temperature) * np.sqrt(np.clip(x * x * ss + 2 * x * si + ii, 0, None))

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
    design = np.column_stack([x, np.ones_like(x)])
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ np.array([slope, intercept])
    covariance = np.linalg.inv(design.T @ design) * (residual @ residual / (t.size - 2))
    return ArrheniusFit(
        activation_energy=float(-slope), activation_energy_err=float(np.sqrt(covariance[0, 0])),
        prefactor=float(np.exp(intercept)), with_temperature=with_temperature,
        covariance=tuple(map(tuple, covariance.tolist())),
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


class CriticalCurrentDetector:
    """Follow a galvanostatic staircase reading by reading; find the step at which the cell shorted.

    A short is a collapse of the cell's area-specific resistance V / j below ``(1 - drop)`` of its
    value at the last reading before, lasting ``hold`` seconds. Comparing with the reading just
    before, not with the start of the staircase or of a step, is what keeps the rule sound on both
    surfaces: a lithiophobic interface wets as the first lithium is plated and the cell's resistance
    falls three- to fourfold over minutes, gradually, whereas a filament bridging the pellet takes it
    to R_short between two readings. The hold lets soft shorts (brief parallel paths) pass. Readings
    must be close enough together that wetting alone never costs ``drop`` between two of them (10 s
    apart is enough for a staircase that starts below ~2 mA/cm^2 on the simulator's lithiophobic cell).

    Parameters
    ----------
    drop : float
        Fraction of V / j lost at once that counts as a collapse (0.5: to half or less).
    hold : float
        How long the collapse must last, s.
    """

    def __init__(self, drop: float = 0.5, hold: float = 60.0):
        self.drop, self.hold = drop, hold
        self._reference: float | None = None  # V / j at the last reading that had not collapsed
        self._step: float | None = None  # |j| of the present step
        self._held: float | None = None  # |j| of the step before it: the highest held so far
        self._collapse: tuple[float, float, float | None] | None = None  # (time, step, held) when it began
        self.found: CriticalCurrent | None = None

    def add(self, time: float, current_density: float, voltage: float) -> CriticalCurrent | None:
        """Take one reading (s, A/m^2 of either sign, V); return the outcome once a short has lasted."""
        if current_density == 0 or self.found is not None:
            return self.found  # rests between steps carry no resistance
        if abs(current_density) != self._step:
            self._step, self._held = abs(current_density), self._step
        asr = voltage / current_density
        if self._reference is None or asr >= (1 - self.drop) * self._reference:
            self._reference, self._collapse = asr, None
            return None
        if self._collapse is None:
            self._collapse = (time, self._step, self._held)
        start, step, held = self._collapse
        if time - start >= self.hold:
            self.found = CriticalCurrent(density=step, last_stable=held, time=start)
        return self.found

    def outcome(self) -> CriticalCurrent:
        """Return the short if one has lasted ``hold``, else no critical value and the highest step held."""
        if self.found is not None:
            return self.found
        held = self._collapse[2] if self._collapse is not None else self._step  # a collapse still on holds nothing
        return CriticalCurrent(density=None, last_stable=held, time=None)


def critical_current_density(times, current_density, voltage, *, drop: float = 0.5,
                             hold: float = 60.0) -> CriticalCurrent:
    """Find the critical current density in a galvanostatic staircase (rules of :class:`CriticalCurrentDetector`).

    Parameters
    ----------
    times : array_like
        Sample times, s.
    current_density : array_like
        Applied current density at each sample, A/m^2 (either sign; steps are runs of equal value).
    voltage : array_like
        Cell voltage at each sample, V.
    drop : float
        Fraction of V / j lost at once that counts as a collapse (0.5: to half or less).
    hold : float
        How long the collapse must last to be a short, s.

    Returns
    -------
    CriticalCurrent
    """
    detector = CriticalCurrentDetector(drop, hold)
    for t, j, v in zip(times, current_density, voltage):
        if detector.add(float(t), float(j), float(v)) is not None:
            break
    return detector.outcome()
