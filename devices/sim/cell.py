"""A Li/LLZTO/Li (or LiMg/LLZTO/Li, or Ni/LLZTO/Ni) cell, as cell-model.md describes it.

The state is what the seed paper's mechanism needs and nothing more: charge passed (which wets a
lithiophobic interface), the depth of the lithium-filled crack network grown from each electrode,
the contact left at each electrode after void-forming stripping, the interface overpotential, and
whether the cell has (softly or fully) short-circuited. Impedance, DC voltage and current all
follow from that state, the chamber temperature and the stack pressure, so what the plots show is
emergent rather than looked up.

All quantities are SI (ohm, m, m^2, A, A/m^2, C/m^2, F, K, Pa, s). Sign convention as EC-Lab:
``current < 0`` is a cathodic current at the working electrode, i.e. lithium plates on the WE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import gamma

BOLTZMANN_EV = 8.617333262e-5  # eV/K
VACUUM_PERMITTIVITY = 8.8541878128e-12  # F/m
LITHIUM_MELTING_POINT = 453.65  # K
CELSIUS_25 = 298.15
CELSIUS_30 = 303.15


class CellParameters(BaseModel):
    """Every default of cell-model.md, in SI units; override any field per cell in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["symmetric", "tracer", "blocking"] = "symmetric"
    surface: Literal["lithiophobic", "lithiophilic"] = "lithiophobic"
    thickness: float = Field(default=1.2e-3, gt=0, description="pellet thickness L, m")
    electrode_area: float = Field(default=math.pi * 1e-3**2, gt=0, description="per electrode, m^2")
    relative_density: float = Field(default=0.96, gt=0.5, le=1.0)

    # Transport
    bulk_conductivity_25c: float = Field(default=0.1, gt=0, description="dense LLZTO at 25 degC, S/m")
    bulk_activation_energy: float = Field(default=0.40, gt=0, description="eV")
    bulk_permittivity: float = Field(default=50.0, gt=0, description="relative")
    stray_capacitance: float = Field(default=10e-12, ge=0, description="F, fixture and leads")
    grain_boundary: bool = Field(default=False, description="add the optional second high-frequency arc")
    grain_boundary_ratio: float = Field(default=0.1, ge=0, description="R_gb / R_bulk")
    grain_boundary_q: float = Field(default=1e-10, gt=0, description="CPE, F s^(alpha-1)")
    grain_boundary_alpha: float = Field(default=0.9, gt=0, le=1)
    electronic_conductivity: float = Field(default=1e-6, gt=0, description="S/m (1e-8 S/cm)")
    lead_resistance: float = Field(default=5.0, ge=0, description="R0: leads and current collectors, ohm")

    # Interface (both electrodes together, area-specific)
    asr_lithiophobic_initial: float = Field(default=0.2, gt=0, description="ohm m^2 (2000 ohm cm^2)")
    asr_lithiophobic_conditioned: float = Field(default=0.05, gt=0, description="ohm m^2 (500 ohm cm^2)")
    asr_lithiophilic: float = Field(default=5e-4, gt=0, description="ohm m^2 (5 ohm cm^2)")
    conditioning_charge: float = Field(default=240.0, gt=0, description="C/m^2 e-folding: 3 within 0.02 mAh/cm^2")
    interface_activation_energy: float = Field(default=0.35, gt=0, description="eV")
    interface_reference_temperature: float = Field(default=CELSIUS_30, gt=0, description="K")
    reference_pressure: float = Field(default=5e6, gt=0, description="Pa")
    pressure_exponent: float = Field(default=0.5, ge=0)
    pressure_factor_bounds: tuple[float, float] = (0.5, 5.0)
    interface_capacitance: float = Field(default=0.05, gt=0, description="CPE per area at full contact (5 uF/cm^2)")
    interface_alpha: float = Field(default=0.85, gt=0, le=1)
    blocking_capacitance: float = Field(default=0.1, gt=0, description="double layer per electrode (10 uF/cm^2)")
    blocking_alpha: float = Field(default=0.9, gt=0, le=1)
    tracer_offset: float = Field(default=3e-3, description="V, LiMg working electrode vs Li")

    # Plating, cracks, shorts
    edge_factor: float = Field(default=1.2, ge=1)
    focusing_reference_asr: float = Field(default=2.5e-4, gt=0, description="per electrode, ideal contact, ohm m^2")
    focusing_exponent: float = Field(default=0.44, ge=0)
    critical_current_density: float = Field(default=35.0, gt=0, description="local, A/m^2, at reference density/pressure")
    critical_density_reference: float = Field(default=0.96, gt=0, lt=1)
    critical_density_exponent: float = Field(default=0.5, ge=0)
    critical_pressure_exponent: float = Field(default=0.25, ge=0)
    minimum_pressure: float = Field(default=1e5, gt=0, description="Pa; pores hold pressure even with the rig off")
    incubation_time: float = Field(default=180.0, ge=0, description="s above critical before pores fill (nucleation)")
    penetration_velocity: float = Field(default=3.6e-6, gt=0, description="m/s at relative excess 1")
    penetration_exponent: float = Field(default=3.0, gt=0)
    crack_coverage: float = Field(default=0.75, ge=0, lt=1, description="share of the cross-section the crack network shortens")
    pore_scatter: float = Field(default=0.2, ge=0, description="log-normal sigma of the cell's near-surface pore population")
    growth_scatter: float = Field(default=0.5, ge=0, description="coefficient of variation of one sub-step's crack growth")
    soft_short_onset: float = Field(default=0.3, gt=0, lt=1, description="x/L where soft shorts begin")
    soft_short_rate: float = Field(default=1 / 600, ge=0, description="per C/m^2 plated at x = L")
    soft_short_resistance: float = Field(default=5000.0, gt=0, description="median, ohm")
    soft_short_floor: float = Field(default=6.0, ge=1, description="soft shorts are at least this many times short_resistance")
    soft_short_duration: float = Field(default=20.0, gt=0, description="mean, s")
    short_resistance: float = Field(default=480.0, gt=0, description="ohm; the paper measured 487")
    critical_stripping_per_pressure: float = Field(default=1.5e-6, gt=0, description="A/m^2 per Pa (0.15 mA/cm^2 per MPa)")
    void_charge: float = Field(default=3.6e4, gt=0, description="C/m^2 stripped beyond the critical current per e-fold of contact (1 mAh/cm^2)")

    # Measurement
    voltage_noise: float = Field(default=0.2e-3, ge=0, description="V rms")
    impedance_noise: float = Field(default=0.005, ge=0, description="relative to |Z|")
    impedance_floor: float = Field(default=0.05, ge=0, description="ohm rms")
    current_noise: float = Field(default=1e-11, ge=0, description="A rms")
    max_substep: float = Field(default=10.0, gt=0, description="s, integration step of the slow state")


@dataclass
class CellState:
    """What changes as the cell is cycled."""

    time: float
    charge_passed: float = 0.0  # C/m^2, any direction: wets a lithiophobic interface
    plated_we: float = 0.0  # C/m^2 net plated on the working electrode
    depth_we: float = 0.0  # m, crack network grown from the working electrode
    depth_ce: float = 0.0
    incubation: float = 0.0  # s spent above the critical local current density
    contact_we: float = 1.0  # fraction left after stripping voids
    contact_ce: float = 1.0
    overpotential: float = 0.0  # V across the interfaces
    short_time: float | None = None
    short_resistance: float = math.inf
    short_resistance_if_shorted: float = math.inf  # drawn at assembly: the filament this cell will grow
    soft_shorts: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, ohm)


def arrhenius(energy_ev: float, temperature: float, reference: float) -> float:
    """Return the rate factor exp(-Ea/k (1/T - 1/Tref))."""
    return math.exp(-energy_ev / BOLTZMANN_EV * (1 / temperature - 1 / reference))


def cpe_arc(resistance: float, q: float, alpha: float, omega: np.ndarray) -> np.ndarray:
    """Impedance of R in parallel with a constant-phase element."""
    return resistance / (1 + resistance * q * (1j * omega) ** alpha)


def mittag_leffler(alpha: float, z: np.ndarray) -> np.ndarray:
    """E_alpha(-z) for z >= 0: the step response of R in series with a CPE."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    small = z < 4
    k = np.arange(80)
    terms = (-z[small, None]) ** k / gamma(alpha * k + 1)
    out[small] = terms.sum(axis=1)
    big = z[~small]
    series = [(-1) ** (n + 1) * big**-n / gamma(1 - alpha * n) for n in (1, 2, 3)]
    out[~small] = np.sum(series, axis=0)
    return np.clip(out, 0.0, 1.0)


class SimCell:
    """The cell on the virtual clock.

    Parameters
    ----------
    params : CellParameters
        Geometry, transport and failure parameters.
    temperature : callable
        ``temperature(t)`` in K, usually the simulated chamber's.
    pressure : callable
        ``pressure(t)`` in Pa, usually the simulated rig's.
    rng : numpy.random.Generator
        The cell's seeded generator. Two independent streams are spawned from it: one for the
        physics (the cell's pore population, crack growth increments, soft shorts), drawn per step of
        a fixed time grid anchored at ``start``, so how often instruments ask for data cannot change
        the cell's fate; and one for measurement noise (``self.rng``), drawn per sample.
    start : float
        Clock time at which the cell is assembled.
    """

    def __init__(
        self,
        params: CellParameters,
        temperature: Callable[[float], float],
        pressure: Callable[[float], float],
        rng: np.random.Generator,
        start: float,
    ):
        self.params = params
        self._temperature = temperature
        self._pressure = pressure
        physics, self.rng = rng.spawn(2)
        self.state = CellState(time=start)
        self._origin = start
        self._current = 0.0  # the applied current since state.time
        # The batch-to-batch scatter of real cells: how connected the near-surface pores are sets how
        # fast a lithium-filled network grows through them (and how soon it nucleates).
        self.pore_factor = float(np.exp(params.pore_scatter * physics.standard_normal()))
        self.state.short_resistance_if_shorted = params.short_resistance * float(physics.uniform(0.9, 1.1))
        self._physics = physics
        self._draws = np.empty((0, 5))
        self._draws_from = 0  # grid step of self._draws[0]

    # ---- material properties at the present state -------------------------------------------
    @property
    def has_lithium(self) -> bool:
        return self.params.kind != "blocking"

    def bulk_resistance(self, temperature: float) -> float:
        p = self.params
        sigma = p.bulk_conductivity_25c * p.relative_density**1.5
        sigma *= arrhenius(p.bulk_activation_energy, temperature, CELSIUS_25)
        reach = min((self.state.depth_we + self.state.depth_ce) / p.thickness, 1.0)
        # Lithium in the crack network shortens the ionic path where the network is, not across the
        # whole pellet: the bulk falls towards (1 - coverage) of its value as the network nears L.
        return (1 - p.crack_coverage * reach) * p.thickness / (sigma * p.electrode_area)

    def bulk_capacitance(self) -> float:
        p = self.params
        return VACUUM_PERMITTIVITY * p.bulk_permittivity * p.electrode_area / p.thickness + p.stray_capacitance

    def electronic_resistance(self) -> float:
        p = self.params
        return p.thickness / (p.electronic_conductivity * p.electrode_area)

    def wetting(self) -> float:
        """Return the contact fraction a lithiophobic surface has gained by the charge passed."""
        p = self.params
        if p.surface == "lithiophilic":
            return 1.0
        asr = p.asr_lithiophobic_conditioned + (p.asr_lithiophobic_initial - p.asr_lithiophobic_conditioned) * math.exp(
            -self.state.charge_passed / p.conditioning_charge
        )
        return p.asr_lithiophobic_conditioned / asr

    def electrode_asr(self, contact: float, temperature: float, pressure: float) -> float:
        """Return one electrode's area-specific interface resistance, ohm m^2."""
        p = self.params
        ideal = (p.asr_lithiophilic if p.surface == "lithiophilic" else p.asr_lithiophobic_conditioned) / 2
        low, high = p.pressure_factor_bounds
        pressure_factor = min(max((max(pressure, 1.0) / p.reference_pressure) ** -p.pressure_exponent, low), high)
        thermal = 1 / arrhenius(p.interface_activation_energy, temperature, p.interface_reference_temperature)
        return ideal / (self.wetting() * contact) * pressure_factor * thermal

    def interface_resistances(self, temperature: float, pressure: float) -> tuple[float, float]:
        area = self.params.electrode_area
        s = self.state
        return (
            self.electrode_asr(s.contact_we, temperature, pressure) / area,
            self.electrode_asr(s.contact_ce, temperature, pressure) / area,
        )

    def critical_current_density(self, pressure: float) -> float:
        """Return the local current density above which lithium deposits in occluded pores."""
        p = self.params
        density = ((1 - p.critical_density_reference) / max(1 - p.relative_density, 1e-3)) ** p.critical_density_exponent
        squeeze = (max(pressure, p.minimum_pressure) / p.reference_pressure) ** p.critical_pressure_exponent
        return p.critical_current_density * density * squeeze

    def local_current_density(self, current: float, temperature: float, pressure: float) -> float:
        """Return the current density at the plating electrode's hot spots (edge and contact points)."""
        p = self.params
        contact = self.state.contact_we if current < 0 else self.state.contact_ce
        asr = self.electrode_asr(contact, temperature, pressure)
        focusing = p.edge_factor * max(1.0, asr / p.focusing_reference_asr) ** p.focusing_exponent
        return abs(current) / p.electrode_area * focusing

    # ---- state evolution ----------------------------------------------------------------------
    def advance(self, until: float, current: float) -> None:
        """Integrate the state to ``until`` under a constant applied ``current``."""
        while self.state.time < until:
            self._substep(self._step_end(until) - self.state.time, current)

    def _grid_step(self, time: float) -> int:
        """Return the index of the fixed integration-grid step that ``time`` falls in."""
        return int(math.floor((time - self._origin) / self.params.max_substep + 1e-6))

    def _step_end(self, until: float) -> float:
        """Return where the next sub-step ends: the next grid line, or ``until`` if sooner.

        Sub-steps stop on a grid anchored at the cell's assembly, whatever the times instruments
        ask at, so a poll more or less splits a step but never moves the grid or the draws.
        """
        boundary = self._origin + (self._grid_step(self.state.time) + 1) * self.params.max_substep
        return min(boundary, until)

    def _step_draws(self, k: int) -> np.ndarray:
        """Return grid step ``k``'s random numbers: growth factor, and a soft short's chance, offset,
        duration and resistance. Drawn in order in blocks, so each step's are fixed by the seed."""
        p = self.params
        while k >= self._draws_from + len(self._draws):
            n, cv = 4096, p.growth_scatter
            g = self._physics
            growth = g.gamma(1 / cv**2, cv**2, n) if cv > 0 else np.ones(n)
            block = np.column_stack([growth, g.uniform(size=n), g.uniform(size=n),
                                     g.exponential(p.soft_short_duration, n), g.lognormal(0, 0.5, n)])
            self._draws_from += len(self._draws)
            self._draws = block
        return self._draws[k - self._draws_from]

    def _substep(self, dt: float, current: float) -> None:
        s, p = self.state, self.params
        t_mid = s.time + dt / 2
        temperature, pressure = self._temperature(t_mid), self._pressure(t_mid)
        if self.has_lithium and current != 0.0 and s.short_time is None:
            draws = self._step_draws(self._grid_step(t_mid))
            self._grow_cracks(dt, current, temperature, pressure, draws[0])
            self._grow_voids(dt, current, pressure)
            self._maybe_soft_short(dt, current, t_mid, draws)
        density = abs(current) / p.electrode_area
        s.charge_passed += density * dt
        s.plated_we += -current / p.electrode_area * dt
        self._relax_overpotential(dt, current, temperature, pressure)
        s.time += dt

    def _grow_cracks(self, dt: float, current: float, temperature: float, pressure: float, factor: float) -> None:
        p, s = self.params, self.state
        critical = self.critical_current_density(pressure)
        excess = (self.local_current_density(current, temperature, pressure) - critical) / critical
        if excess <= 0:
            return
        s.incubation += dt
        if s.incubation < p.incubation_time / self.pore_factor:
            return
        growth = p.penetration_velocity * self.pore_factor * factor * excess**p.penetration_exponent * dt
        if current < 0:
            s.depth_we += growth
        else:
            s.depth_ce += growth
        depth = s.depth_we + s.depth_ce
        if depth >= p.thickness:
            overshoot = (depth - p.thickness) / growth
            s.short_time = s.time + dt * (1 - overshoot)
            s.short_resistance = s.short_resistance_if_shorted

    def _grow_voids(self, dt: float, current: float, pressure: float) -> None:
        """Strip faster than lithium creeps back and the stripping electrode loses contact.

        The contact lost goes with the charge stripped beyond what creep refills (the critical
        stripping current, which rises with pressure), not with the ratio of the two: a cell without
        stack pressure keeps contact for hours at 0.5 mA/cm^2, as in the study (its Fig. S12).
        """
        p, s = self.params, self.state
        critical = p.critical_stripping_per_pressure * max(pressure, p.minimum_pressure)
        deficit = abs(current) / p.electrode_area - critical
        if deficit <= 0:
            return
        loss = math.exp(-deficit * dt / p.void_charge)
        if current < 0:  # plating on the WE strips the CE
            s.contact_ce = max(s.contact_ce * loss, 0.01)
        else:
            s.contact_we = max(s.contact_we * loss, 0.01)

    def _maybe_soft_short(self, dt: float, current: float, t_mid: float, draws: np.ndarray) -> None:
        """At most one soft short per grid step, at its drawn offset, with the chance its reach gives,
        and none while another lasts.

        Soft shorts come per charge plated (filament tips touching the counter electrode), so a cell
        plated fast has them often; each is a thinner filament than the one that shorts for good.
        """
        p, s = self.params, self.state
        reach = (s.depth_we + s.depth_ce) / p.thickness
        if reach <= p.soft_short_onset:
            return
        _, chance, offset, duration, spread = draws
        grid_start = self._origin + self._grid_step(t_mid) * p.max_substep
        start = grid_start + offset * p.max_substep
        if not s.time <= start < s.time + dt:
            return
        if s.soft_shorts and s.soft_shorts[-1][1] > start:
            return  # one filament touches at a time: while it does, the others see less driving force
        rate = p.soft_short_rate * abs(current) / p.electrode_area * (reach - p.soft_short_onset) / (1 - p.soft_short_onset)
        if chance < -math.expm1(-rate * p.max_substep):
            resistance = max(p.soft_short_resistance * spread, p.soft_short_floor * p.short_resistance)
            s.soft_shorts.append((start, start + duration, resistance))

    def _relax_overpotential(self, dt: float, current: float, temperature: float, pressure: float) -> None:
        r_int, tau = self._interface_dc(temperature, pressure)
        target = current * r_int
        self.state.overpotential = target + (self.state.overpotential - target) * math.exp(-dt / tau)

    def _interface_dc(self, temperature: float, pressure: float) -> tuple[float, float]:
        """Return the interfaces' DC resistance and their charging time constant."""
        p = self.params
        r_we, r_ce = self.interface_resistances(temperature, pressure)
        q = p.interface_capacitance * p.electrode_area * self.wetting()
        # Effective capacitance of an R-CPE pair: C = (Q R^(1-alpha))^(1/alpha).
        r = r_we + r_ce
        c = (q * (r / 2) ** (1 - p.interface_alpha)) ** (1 / p.interface_alpha) / 2
        return r, max(r * c, 1e-9)

    # ---- what instruments measure -------------------------------------------------------------
    def open_circuit_voltage(self) -> float:
        return self.params.tracer_offset if self.params.kind == "tracer" else 0.0

    def dc_resistance(self, times: np.ndarray) -> np.ndarray:
        """Return the cell's DC resistance at ``times`` (<= state.time), shorts included."""
        temperature, pressure = self._temperature(self.state.time), self._pressure(self.state.time)
        r_ce_we = sum(self.interface_resistances(temperature, pressure))
        ionic = self.params.lead_resistance + self.bulk_resistance(temperature) + r_ce_we
        conductance = np.full(len(times), 1 / ionic + 1 / self.electronic_resistance())
        return 1 / (conductance + self._short_conductance(times))

    def _short_conductance(self, times: np.ndarray) -> np.ndarray:
        s = self.state
        g = np.zeros(len(times))
        if s.short_time is not None:
            g += np.where(times >= s.short_time, 1 / s.short_resistance, 0.0)
        for start, end, resistance in s.soft_shorts:
            g += np.where((times >= start) & (times < end), 1 / resistance, 0.0)
        return g

    def galvanostatic(self, times: np.ndarray, current: float) -> np.ndarray:
        """Apply ``current`` until ``times[-1]``; return Ewe - Ece at ``times``.

        The slow state is integrated in sub-steps; the voltage between them is interpolated, so a
        day at 1 s sampling costs one vectorised pass rather than a Python loop per point.
        """
        times = np.asarray(times, dtype=float)
        start = self.state.time
        temperature, pressure = self._temperature(start), self._pressure(start)
        r_int, tau = self._interface_dc(temperature, pressure)
        # The interfaces charge towards I x R_int with their own (sub-second) time constant; that
        # transient is evaluated exactly at the sample times, the slow drift of R by sub-steps.
        deviation = self.state.overpotential - current * r_int
        grid, series = [start], [self.params.lead_resistance + self.bulk_resistance(temperature) + r_int]
        while self.state.time < times[-1]:
            self._substep(self._step_end(times[-1]) - self.state.time, current)
            temperature, pressure = self._temperature(self.state.time), self._pressure(self.state.time)
            grid.append(self.state.time)
            series.append(self.params.lead_resistance + self.bulk_resistance(temperature)
                          + self._interface_dc(temperature, pressure)[0])
        ionic_drop = np.interp(times, grid, series) * current + deviation * np.exp(-(times - start) / tau)
        voltage = self._with_shorts(times, ionic_drop, current)
        return voltage + self.open_circuit_voltage() + self.rng.normal(0, self.params.voltage_noise, len(times))

    def _with_shorts(self, times: np.ndarray, ionic_drop: np.ndarray, current: float) -> np.ndarray:
        """Voltage when electronic and short paths share the current with the ionic path."""
        if current == 0.0:
            return ionic_drop
        ionic_resistance = ionic_drop / current
        g_parallel = 1 / self.electronic_resistance() + self._short_conductance(times)
        return current / (1 / ionic_resistance + g_parallel)

    def rest(self, times: np.ndarray) -> np.ndarray:
        """Leave the cell at open circuit until ``times[-1]``; return the relaxing voltage."""
        return self.galvanostatic(times, 0.0)

    def potentiostatic(self, times: np.ndarray, voltage: float, since: float | None = None) -> np.ndarray:
        """Hold Ewe - Ece at ``voltage`` from state.time; return the current at ``times``.

        On a blocking cell the current decays from the ionic value to the electronic one,
        I = V/R_e at steady state, with the power-law tail of an R-CPE step response.
        ``since`` is when the voltage was applied, for a step read out in several calls (an
        instrument polled during the step); by default the step starts now.
        """
        times = np.asarray(times, dtype=float)
        start = self.state.time if since is None else since
        temperature, pressure = self._temperature(start), self._pressure(start)
        drive = voltage - self.open_circuit_voltage()
        r_e = self.electronic_resistance()
        r_series = self.params.lead_resistance + self.bulk_resistance(temperature)
        if self.has_lithium:
            r_int, tau = self._interface_dc(temperature, pressure)
            ionic = drive / (r_series + r_int) + drive * (1 / r_series - 1 / (r_series + r_int)) * np.exp(
                -(times - start) / tau
            )
            self.advance(times[-1], float(drive / (r_series + r_int)))
        else:
            q, alpha = self.params.blocking_capacitance * self.params.electrode_area / 2, self.params.blocking_alpha
            tau = (r_series * q) ** (1 / alpha)
            ionic = drive / r_series * mittag_leffler(alpha, ((times - start) / tau) ** alpha)
            self.state.time = max(self.state.time, float(times[-1]))
        current = ionic + drive / r_e + drive * self._short_conductance(times)
        return current + self.rng.normal(0, self.params.current_noise, len(times))

    def impedance(self, frequencies: np.ndarray, noisy: bool = True) -> np.ndarray:
        """Return Z(f) at the present state, with the instrument's noise unless ``noisy`` is False."""
        p, s = self.params, self.state
        omega = 2 * np.pi * np.asarray(frequencies, dtype=float)
        temperature, pressure = self._temperature(s.time), self._pressure(s.time)
        r_bulk = self.bulk_resistance(temperature)
        z = r_bulk / (1 + 1j * omega * r_bulk * self.bulk_capacitance())
        if p.grain_boundary:
            z = z + cpe_arc(p.grain_boundary_ratio * r_bulk, p.grain_boundary_q, p.grain_boundary_alpha, omega)
        z = z + self._interface_impedance(omega, temperature, pressure)
        g = 1 / z + 1 / self.electronic_resistance() + self._short_conductance(np.array([s.time]))[0]
        z = p.lead_resistance + 1 / g
        if noisy:
            z = z + self._impedance_noise(z)
        return z

    def _interface_impedance(self, omega: np.ndarray, temperature: float, pressure: float) -> np.ndarray:
        p, s = self.params, self.state
        if not self.has_lithium:
            q = p.blocking_capacitance * p.electrode_area / 2  # two double layers in series
            return 1 / (q * (1j * omega) ** p.blocking_alpha)
        r_we, r_ce = self.interface_resistances(temperature, pressure)
        q_full = p.interface_capacitance * p.electrode_area * self.wetting()
        return cpe_arc(r_we, q_full * s.contact_we, p.interface_alpha, omega) + cpe_arc(
            r_ce, q_full * s.contact_ce, p.interface_alpha, omega
        )

    def _impedance_noise(self, z: np.ndarray) -> np.ndarray:
        p = self.params
        scale = p.impedance_noise * np.abs(z) / math.sqrt(2) + p.impedance_floor
        return scale * (self.rng.normal(size=z.shape) + 1j * self.rng.normal(size=z.shape))

    def resistances(self) -> dict[str, float]:
        """Return the model's true resistances now (for tests and for checking fits)."""
        temperature, pressure = self._temperature(self.state.time), self._pressure(self.state.time)
        r_we, r_ce = self.interface_resistances(temperature, pressure) if self.has_lithium else (math.inf, math.inf)
        r_bulk = self.bulk_resistance(temperature)
        return {
            "bulk": r_bulk,
            "grain_boundary": self.params.grain_boundary_ratio * r_bulk if self.params.grain_boundary else 0.0,
            "interface": r_we + r_ce,
            "electronic": self.electronic_resistance(),
            "short": self.state.short_resistance,
        }
