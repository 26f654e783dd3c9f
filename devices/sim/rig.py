"""A stack-pressure rig on the virtual clock, as cell-model.md describes it.

Mechanics, along the press axis (positions in m, positive towards the cell):

* A screw-driven crosshead moves at most ``max_speed`` towards a commanded position. It starts
  ``initial_gap`` short of touching the stack: no contact, zero force.
* The frame (load cell, platens, screws) is a spring of stiffness ``frame_stiffness`` in series
  with the cell stack, so the force is ``F = k * max(e, 0)`` with the elastic compression
  ``e = x + d_thermal(T) - d_creep``.
* ``d_thermal = (alpha_li - alpha_frame) * h_li * (T - T_assembly)``: lithium expands about four
  times as much as the steel frame, so heating the stack lengthens it inside the frame and raises
  the force. The oxide pellet (about 15e-6/K) and the steel spacers match the frame closely, so
  only the lithium thickness counts.
* ``d_creep`` grows as the lithium creeps under the stack pressure ``sigma = F / area``:
  ``d(d_creep)/dt = h_li * A * sigma**n * exp(-Q / (R T)) * g(T)``, power law with n = 6.6 and
  Q = 37 kJ/mol (published for lithium). ``g(T) = ((1 - T_ref/T_m) / (1 - T/T_m))**m`` is 1 at
  30 degC and diverges towards the melting point T_m: close to melting, diffusional creep adds to
  the dislocation creep that one activation energy describes. The creeping thickness is what is
  left of the lithium above a residual film (``residual_lithium``): ``h_li`` falls as it creeps, so
  creep slows and stops before it has squeezed out more lithium than the stack holds. With m = 1 creep at 170 degC is
  about 1500 times faster than at 30 degC (about 100 from the Arrhenius term, 14 from g).

At a fixed crosshead and temperature the stress obeys ``d sigma/dt = -c sigma**n`` with
``c = (k / area) * h_li * A * exp(-Q/RT) * g(T)``, which has the exact solution
``sigma**(1-n) = sigma0**(1-n) + (n-1) c t``. The rig integrates lazily: each query first
integrates from the last integrated time in sub-steps that end at controller ticks, at crosshead
arrivals and at least every ``max_step``. Within a sub-step the temperature is taken as the mean of
its end values, and crosshead motion and thermal expansion are applied half before and half after
the exact creep solution (Strang splitting), so a day at fixed displacement is ~1440 sub-steps and a
day of closed-loop holding is one sub-step per control period (~17300).

The creep constant ``A`` is an effective value tuned so that 5.0 MPa at fixed displacement at
30 degC relaxes to 4.6 MPa in 5 h with the default frame and area: it is far below bulk lithium's
because a thin lithium layer clamped between a pellet and a current collector is constrained and
flows much more slowly than a free specimen.

Closed loop: every ``control_period`` while holding, the controller averages the force reading
over the period (``controller_averaging`` samples) and commands the crosshead to move, by the next
tick, by ``(drift + controller_gain * error) / frame_stiffness``; inside ``deadband_fraction * band``
of the target only by the drift, so sensor noise does not drive the crosshead. ``drift`` is the
force the stack gives up per period (creep; thermal expansion counts negative), learned as it is
seen: the force the last move should have brought minus the force that came, averaged with weight
``drift_gain``. Without it a proportional loop lags creep by about ``drift / controller_gain``: at
170 degC, where creep takes ~0.2 MPa per 5 s period, the pressure sat 0.15-0.23 MPa below the target.
The move is spread over the period at the speed that ends it at the next tick (at most
``max_speed``), as a servo-driven screw follows creep, instead of made at full speed and then left
standing while creep takes the period's worth back. The drift is learned only from a period that
starts and ends with the stack loaded and a move the crosshead could finish (not from the approach,
a large step or a lost contact), so that it never winds up.

All quantities are SI: m, m^2, N, Pa, K, s, J/mol.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from devices.sim.lazy import LazySimulator
from labctl.core.clock import Clock

GAS_CONSTANT = 8.314462618  # J/(mol K)
MIN_CREEP_STRESS = 1.0  # Pa: below this creep is nil, and sigma**(1-n) would overflow
MIN_HOMOLOGOUS_MARGIN = 0.01  # 1 - T/T_m floor: keeps g(T) finite if T reaches T_m (not refused here)


class RigParameters(BaseModel):
    """The rig's mechanics, the lithium's creep and the controller; override any in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Geometry and frame
    area: float = Field(
        default=0.785e-4, gt=0, description="pressed area, m^2 (10 mm pellet; the lab file states the real one)"
    )
    frame_stiffness: float = Field(default=2e7, gt=0, description="frame and load cell in series, N/m")
    lithium_thickness: float = Field(default=1.0e-3, gt=0, description="total lithium in the stack, m (2 x 0.5 mm)")
    residual_lithium: float = Field(
        default=0.1, gt=0, lt=1, description="fraction of the lithium creep cannot squeeze out (a film held by the interfaces)"
    )
    # Creep: strain rate = A sigma^n exp(-Q/RT) g(T)
    creep_coefficient: float = Field(
        default=1.68e-45,
        ge=0,
        description="A, Pa^-n s^-1 (6.7e-6 MPa^-6.6 s^-1); tuned: 5.0 -> 4.6 MPa in 5 h at 30 degC",
    )
    creep_exponent: float = Field(default=6.6, gt=1, description="n, stress exponent of lithium")
    creep_activation_energy: float = Field(default=37e3, ge=0, description="Q, J/mol")
    creep_reference_temperature: float = Field(default=303.15, gt=0, description="T_ref where g(T) = 1, K")
    homologous_exponent: float = Field(default=1.0, ge=0, description="m in g(T); 0 leaves pure Arrhenius creep")
    lithium_melting_point: float = Field(default=453.65, gt=0, description="T_m, K")
    # Thermal expansion
    lithium_expansion: float = Field(default=46e-6, description="alpha_li, 1/K")
    frame_expansion: float = Field(default=12e-6, description="alpha of the steel frame, 1/K")
    # Actuator
    max_speed: float = Field(default=1e-6, gt=0, description="crosshead speed limit, m/s")
    initial_gap: float = Field(default=100e-6, ge=0, description="crosshead clearance to the stack at start, m")
    release_gap: float = Field(default=20e-6, ge=0, description="clearance release() retracts to beyond contact, m")
    # Controller
    band: float = Field(default=0.02e6, gt=0, description="tolerance held around the target, Pa")
    deadband_fraction: float = Field(default=0.5, gt=0, le=1, description="controller acts beyond this part of band")
    control_period: float = Field(default=5.0, gt=0, description="s")
    controller_gain: float = Field(
        default=0.8, gt=0, le=1, description="fraction of the frame-stiffness correction applied per tick"
    )
    drift_gain: float = Field(
        default=0.3, ge=0, le=1, description="weight of each period's observed drift (creep, expansion) in the learned one"
    )
    controller_averaging: int = Field(default=25, ge=1, description="force samples averaged per control tick")
    max_pressure: float = Field(default=50e6, gt=0, description="largest target accepted, Pa")
    # Sensor
    noise_fraction: float = Field(default=0.002, ge=0, description="force noise, rms fraction of the reading")
    noise_floor: float = Field(default=0.05, ge=0, description="force noise at zero load, N rms")
    # Integration
    max_step: float = Field(default=60.0, gt=0, description="longest sub-step, s (the chamber ramps 3 K in 60 s)")


def creep_factor(params: RigParameters, temperature: float) -> float:
    """Return ``A exp(-Q/RT) g(T)``: the creep strain rate per unit ``sigma**n``, Pa^-n s^-1."""
    arrhenius = math.exp(-params.creep_activation_energy / (GAS_CONSTANT * temperature))
    margin = max(1.0 - temperature / params.lithium_melting_point, MIN_HOMOLOGOUS_MARGIN)
    reference = 1.0 - params.creep_reference_temperature / params.lithium_melting_point
    return params.creep_coefficient * arrhenius * (reference / margin) ** params.homologous_exponent


def relax_stress(sigma: float, rate: float, n: float, dt: float) -> float:
    """Return the stress after ``dt`` of ``d sigma/dt = -rate * sigma**n`` (exact), Pa."""
    if sigma < MIN_CREEP_STRESS or rate == 0.0:
        return sigma
    return (sigma ** (1.0 - n) + (n - 1.0) * rate * dt) ** (1.0 / (1.0 - n))


class SimRig(LazySimulator):
    """A simulated stack-pressure rig pressing the cell.

    Parameters
    ----------
    clock : labctl.core.clock.Clock
        The session clock; queries default to ``clock.now()``.
    temperature : callable
        ``temperature(t)`` in K, usually the simulated chamber's; called at increasing ``t``.
        The stack is assembled (zero thermal strain) at the temperature it reports now.
    params : RigParameters
        Frame, creep, actuator, controller and sensor parameters.
    rng : numpy.random.Generator, optional
        The run's seeded generator, for force noise (default: an unseeded one).
    """

    def __init__(
        self,
        clock: Clock,
        temperature: Callable[[float], float],
        params: RigParameters = RigParameters(),
        rng: np.random.Generator | None = None,
    ):
        super().__init__(clock, params, rng)
        self._temperature_of = temperature
        self._temperature = float(temperature(self._time))
        self._assembly_temperature = self._temperature
        self._expansion = 0.0  # m the stack has grown relative to the frame since assembly
        self._rate_at = (math.nan, 0.0)  # (temperature, creep rate): most sub-steps repeat it
        self._position = -params.initial_gap
        self._command = self._position
        self._speed = params.max_speed  # how fast the crosshead moves towards its command, m/s
        self._drift = 0.0  # N per control period the loop has learned the stack gives way by
        self._expected: float | None = None  # N the last move should bring, if it could finish in a period
        self._creep = 0.0  # m the lithium has shortened by creep
        self._target = 0.0
        self._holding = False
        self._next_tick = math.inf

    # -- commands ---------------------------------------------------------------------------

    def set_target(self, pascal: float) -> None:
        """Set the pressure the closed loop holds, Pa (takes effect at the next control tick).

        Raises
        ------
        ValueError
            If ``pascal`` is negative or above ``params.max_pressure``.
        """
        limit = self.params.max_pressure
        if not 0.0 <= pascal <= limit:
            raise ValueError(
                f"requested stack pressure {pascal / 1e6:g} MPa is outside 0 to {limit / 1e6:g} MPa "
                f"(the rig's max_pressure): requested={pascal!r} Pa, limit={limit!r} Pa"
            )
        self._advance(self.clock.now())
        self._target = float(pascal)

    @property
    def target(self) -> float:
        """Get the pressure the closed loop holds, Pa."""
        return self._target

    def hold(self, enabled: bool) -> None:
        """Control the closed loop: on, it acts now and every control period; off, the crosshead stops."""
        self._advance(self.clock.now())
        if enabled and not self._holding:
            self._holding = True
            self._control()
            self._next_tick = self._time + self.params.control_period
        elif not enabled:
            self._stop_loop()
            self._command = self._position  # stays where it is; the pressure then relaxes by creep

    @property
    def holding(self) -> bool:
        """Get whether the closed loop is holding the target."""
        return self._holding

    def release(self) -> None:
        """Stop holding and retract the crosshead to ``release_gap`` beyond contact (zero force)."""
        self._advance(self.clock.now())
        self._stop_loop()
        self._command = self._contact_position() - self.params.release_gap
        self._speed = self.params.max_speed

    # -- queries ----------------------------------------------------------------------------

    def force(self, t: float | None = None) -> float:
        """Measure the true force on the stack at ``t`` (default now), N."""
        self._advance(self._when(t))
        return self._force()

    def pressure(self, t: float | None = None) -> float:
        """Measure the true stack pressure at ``t`` (default now), Pa."""
        return self.force(t) / self.params.area

    def crosshead_position(self, t: float | None = None) -> float:
        """Measure the crosshead position at ``t`` (default now), m; 0 touches the stack as assembled."""
        self._advance(self._when(t))
        return self._position

    def read_force(self) -> float:
        """Measure the force as the load cell reports it now: true value plus noise, N."""
        force = self.force()
        p = self.params
        return force + (p.noise_fraction * abs(force) + p.noise_floor) * self.reading_noise(self.clock.now())

    def read_pressure(self) -> float:
        """Measure the pressure as the rig reports it now: noisy force over the area, Pa."""
        return self.read_force() / self.params.area

    # -- state ------------------------------------------------------------------------------

    def _thermal(self, temperature: float) -> float:
        """Return how much longer the stack is than at assembly, relative to the frame, m."""
        p = self.params
        strain = (p.lithium_expansion - p.frame_expansion) * (temperature - self._assembly_temperature)
        return strain * p.lithium_thickness

    def _compression(self) -> float:
        return self._position + self._expansion - self._creep

    def _force(self) -> float:
        return self.params.frame_stiffness * max(self._compression(), 0.0)

    def _contact_position(self) -> float:
        """Return the crosshead position at which the force just reaches zero now, m."""
        return self._creep - self._expansion

    def _noisy(self, force: float, samples: int) -> float:
        """Return ``force`` plus load-cell noise averaged over ``samples`` readings, N."""
        p = self.params
        sigma = (p.noise_fraction * abs(force) + p.noise_floor) / math.sqrt(samples)
        return force + sigma * self.rng.standard_normal()

    # -- closed loop ------------------------------------------------------------------------

    def _stop_loop(self) -> None:
        self._holding = False
        self._next_tick = math.inf
        self._drift, self._expected = 0.0, None  # learned under conditions that may not hold next time

    def _control(self) -> None:
        """One controller tick: learn the drift, then move by it plus a correction outside the deadband."""
        p = self.params
        reading = self._noisy(self._force(), samples=p.controller_averaging)
        deadband = p.deadband_fraction * p.band * p.area
        loaded = reading > deadband  # in contact: an unloaded stack has nothing to give up
        if self._expected is not None and loaded:
            self._drift += p.drift_gain * (self._expected - reading - self._drift)
        error = self._target * p.area - reading
        push = self._drift
        if abs(error) > deadband:
            push += p.controller_gain * error
        reach = p.max_speed * p.control_period * p.frame_stiffness  # N one period of travel can add
        self._expected = reading + push if loaded and abs(push) <= reach else None
        move = push / p.frame_stiffness
        self._command = self._position + move
        # Spread the move over the period; aim a hair past the next tick, so that a period stays one
        # sub-step (the next command supersedes the femtometres left).
        self._speed = min(p.max_speed, abs(move) / p.control_period * (1 - 1e-9)) or p.max_speed

    # -- integration ------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        """Integrate from the last integrated time to ``t``, running controller ticks on the way."""
        if t < self._time:
            raise ValueError(f"rig already integrated to t={self._time!r}; cannot query the earlier t={t!r}")
        while self._time < t:
            self._step(min(t, self._time + self.params.max_step, self._next_tick, self._arrival()))
            if self._time >= self._next_tick:
                self._control()
                self._next_tick += self.params.control_period

    def _arrival(self) -> float:
        """Return when the crosshead reaches its command (now if it is there), s."""
        distance = abs(self._command - self._position)
        return self._time + distance / self._speed if distance else math.inf

    def _step(self, end: float) -> None:
        """Integrate one sub-step to ``end``: half the drive, exact creep, the other half."""
        p = self.params
        dt = end - self._time
        temperature = float(self._temperature_of(end))
        position = self._move(end)
        expansion = self._thermal(temperature)
        drive = (position - self._position) + (expansion - self._expansion)

        compression = self._compression() + 0.5 * drive
        squeezable = (1.0 - p.residual_lithium) * p.lithium_thickness
        left = max(squeezable - self._creep, 0.0)
        if compression > 0.0 and left > 0.0:
            sigma = p.frame_stiffness * compression / p.area
            rate = self._stress_rate(0.5 * (self._temperature + temperature)) * left / squeezable
            relaxed = relax_stress(sigma, rate, p.creep_exponent, dt)
            self._creep += min((sigma - relaxed) * p.area / p.frame_stiffness, left)

        self._position, self._temperature, self._expansion, self._time = position, temperature, expansion, end
        self.step_count += 1

    def _stress_rate(self, temperature: float) -> float:
        """Return c in ``d sigma/dt = -c sigma**n`` at fixed crosshead, Pa^(1-n) s^-1."""
        if temperature != self._rate_at[0]:
            p = self.params
            rate = p.frame_stiffness / p.area * p.lithium_thickness * creep_factor(p, temperature)
            self._rate_at = (temperature, rate)
        return self._rate_at[1]

    def _move(self, end: float) -> float:
        """Return the crosshead position at ``end``, moving at its speed towards the command, m."""
        if self._position == self._command or end >= self._arrival():
            return self._command  # land exactly, so rounding cannot leave a sliver of a move
        travel = self._speed * (end - self._time)
        return self._position + math.copysign(travel, self._command - self._position)
