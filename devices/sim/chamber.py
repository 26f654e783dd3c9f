"""A temperature chamber on the virtual clock, as cell-model.md describes it.

The chamber's controller ramps a *working setpoint* towards the requested setpoint at no more than
``max_ramp_rate``; the air and the cell inside follow the working setpoint with a first-order lag of
time constant ``time_constant``. While the working setpoint is a straight line in time (ramping or
settled) that lag has an exact solution, so the chamber integrates lazily in at most two exact
segments per query (the ramp, then the plateau) however far apart the queries are: a simulated day
costs a handful of exponentials.

All quantities are SI: K, K/s, s.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.sim.lazy import LazySimulator
from labctl.core.clock import Clock

CELSIUS_ZERO = 273.15  # K


class ChamberParameters(BaseModel):
    """The chamber's dynamics and limits (defaults from cell-model.md); override any in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_constant: float = Field(
        default=480.0, gt=0, description="first-order lag of the cell behind the working setpoint, s"
    )
    max_ramp_rate: float = Field(default=0.05, gt=0, description="working-setpoint ramp limit, K/s (3 K/min)")
    noise: float = Field(default=0.05, ge=0, description="rms noise of a temperature reading, K")
    rated_range: tuple[float, float] = Field(
        default=(233.15, 473.15), description="setpoints the chamber accepts, K (-40 to 200 degC)"
    )
    initial_temperature: float = Field(default=298.15, gt=0, description="chamber, cell and setpoint at start, K")

    @model_validator(mode="after")
    def _range_is_ordered(self) -> "ChamberParameters":
        low, high = self.rated_range
        if not 0 < low < high:
            raise ValueError(f"rated_range must be (low, high) with 0 < low < high K, got {self.rated_range}")
        return self


def lag_linear_input(temperature: float, start: float, slope: float, dt: float, tau: float) -> float:
    """Return the exact first-order response to a linear input.

    Solves ``dT/dt = (w(t) - T) / tau`` with ``w(t) = start + slope * t`` from ``T(0) = temperature``
    over ``dt``.

    Parameters
    ----------
    temperature : float
        T at the start of the segment, K.
    start : float
        w at the start of the segment, K.
    slope : float
        dw/dt over the segment, K/s (0 once the ramp has finished).
    dt : float
        Segment length, s.
    tau : float
        Time constant, s.

    Returns
    -------
    float
        T at the end of the segment, K.
    """
    # A ramp is followed with a steady lag of slope * tau; the initial mismatch decays with tau.
    offset = temperature - start + slope * tau
    return start + slope * dt - slope * tau + offset * math.exp(-dt / tau)


class SimChamber(LazySimulator):
    """A simulated temperature chamber holding the cell.

    Parameters
    ----------
    clock : labctl.core.clock.Clock
        The session clock; queries default to ``clock.now()``.
    params : ChamberParameters
        Time constant, ramp limit, noise, rated range and initial temperature.
    rng : numpy.random.Generator, optional
        The run's seeded generator, for reading noise (default: an unseeded one).
    """

    def __init__(
        self,
        clock: Clock,
        params: ChamberParameters = ChamberParameters(),
        rng: np.random.Generator | None = None,
    ):
        super().__init__(clock, params, rng)
        self._setpoint = params.initial_temperature
        self._working = params.initial_temperature
        self._temperature = params.initial_temperature

    # -- commands ---------------------------------------------------------------------------

    def set_setpoint(self, kelvin: float) -> None:
        """Set the setpoint, K; the working setpoint ramps to it from now.

        Raises
        ------
        ValueError
            If ``kelvin`` is outside the rated range (the message gives both in degC).
        """
        low, high = self.params.rated_range
        if not low <= kelvin <= high:
            raise ValueError(
                f"chamber setpoint {kelvin - CELSIUS_ZERO:.2f} degC is outside the rated range "
                f"{low - CELSIUS_ZERO:.2f} to {high - CELSIUS_ZERO:.2f} degC"
            )
        # Settle the past under the old setpoint before the new one takes effect.
        self._advance(self.clock.now())
        self._setpoint = float(kelvin)

    @property
    def setpoint(self) -> float:
        """Get the requested setpoint, K."""
        return self._setpoint

    # -- queries ----------------------------------------------------------------------------

    def working_setpoint(self, t: float | None = None) -> float:
        """Measure the ramp-limited working setpoint at ``t`` (default now), K."""
        self._advance(self._when(t))
        return self._working

    def temperature(self, t: float | None = None) -> float:
        """Measure the true chamber (and cell) temperature at ``t`` (default now), K."""
        self._advance(self._when(t))
        return self._temperature

    def read_temperature(self) -> float:
        """Measure the temperature as the chamber's sensor reports it now: true value plus noise, K."""
        return self.temperature() + self.params.noise * self.reading_noise(self.clock.now())

    # -- integration ------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        """Integrate exactly from the last integrated time to ``t``."""
        if t < self._time:
            raise ValueError(
                f"chamber already integrated to t={self._time!r}; cannot query the earlier t={t!r}"
            )
        while self._time < t:
            self._segment(t)

    def _segment(self, t: float) -> None:
        """Integrate one exact segment: up to the end of the ramp, or to ``t``."""
        gap = self._setpoint - self._working
        rate = self.params.max_ramp_rate
        slope = math.copysign(rate, gap) if gap else 0.0
        end = t if not gap else min(t, self._time + abs(gap) / rate)
        dt = end - self._time
        self._temperature = lag_linear_input(
            self._temperature, self._working, slope, dt, self.params.time_constant
        )
        # Land exactly on the setpoint at the end of the ramp so rounding cannot start another.
        ramp_done = end < t or abs(slope * dt) >= abs(gap)
        self._working = self._setpoint if ramp_done else self._working + slope * dt
        self._time = end
        self.step_count += 1
