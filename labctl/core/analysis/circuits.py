"""Equivalent circuits of a Li/LLZTO/Li (or Ni/LLZTO/Ni) cell as closed-form, vectorised models.

Each circuit gives its impedance and its derivatives with respect to the fit coordinates at all
frequencies in one numpy expression, so a fit never loops over frequencies in Python. Resistances
(ohm) and CPE coefficients Q (F s^(alpha-1)) are fitted as natural logarithms, so they stay positive
and a step means the same relative change at 10 ohm as at 10 kohm; CPE exponents alpha are fitted
as they are, bounded to (0.3, 1].

Element names follow impedance.py's circuit strings: ``R0-p(R1,CPE1)-p(R2,CPE2)``.

Arcs are numbered fastest first: R1 is the bulk arc.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

ALPHA_BOUNDS = (0.3, 1.0)
LOG_BOUNDS = (np.log(1e-15), np.log(1e15))  # wide enough for any Q in F s^(a-1) or R in ohm


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per circuit
class Circuit:
    """An equivalent circuit: its parameters, its model and which resistance means what.

    Parameters
    ----------
    name : str
        The impedance.py circuit string, e.g. ``"R0-p(R1,CPE1)-p(R2,CPE2)"``.
    parameters : tuple of str
        Parameter names in order; ``R*`` in ohm, ``Q*`` in F s^(alpha-1), ``a*`` dimensionless.
    roles : dict
        Which resistance is which physically, e.g. ``{"bulk": "R1", "interface": "R2"}``.
    evaluate : callable
        ``evaluate(params, omega)`` returns ``(z, dz)``: Z at each angular frequency and
        dZ/d(fit coordinate), shape ``(len(parameters), len(omega))``.
    """

    name: str
    parameters: tuple[str, ...]
    roles: dict[str, str]
    evaluate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

    @cached_property  # asked at every model evaluation: computed once per circuit
    def is_log(self) -> np.ndarray:
        """Get which parameters are fitted as logarithms (all but the CPE exponents)."""
        return np.array([not name.startswith("a") for name in self.parameters])

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lower and upper bounds without slack, and which of them slack widens (the exponents')."""
        lower = np.where(self.is_log, LOG_BOUNDS[0], ALPHA_BOUNDS[0])
        upper = np.where(self.is_log, LOG_BOUNDS[1], ALPHA_BOUNDS[1])
        return lower, upper, np.where(self.is_log, 0.0, 1.0)

    def to_fit(self, params) -> np.ndarray:
        """Return the fit coordinates of natural parameter values."""
        params = np.asarray(params, dtype=float)
        return np.where(self.is_log, np.log(np.abs(params)), params)

    def from_fit(self, theta: np.ndarray) -> np.ndarray:
        """Return natural parameter values from fit coordinates.

        Coordinates are clipped to the bounds first (exponents to twice theirs), so an unbounded
        optimiser's wild trial step evaluates to a poor fit instead of an overflow.
        """
        theta = np.clip(theta, *self.bounds(slack=1.0))
        return np.where(self.is_log, np.exp(np.where(self.is_log, theta, 0.0)), theta)

    def bounds(self, slack: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Return the lower and upper bounds in fit coordinates, CPE exponents widened by ``slack``."""
        lower, upper, widen = self._bounds
        return lower - slack * widen, upper + slack * widen  # new arrays: callers may change them

    def impedance(self, params, frequencies) -> np.ndarray:
        """Return Z (ohm) at ``frequencies`` (Hz) for natural parameter values."""
        omega = 2 * np.pi * np.asarray(frequencies, dtype=float)
        return self.evaluate(np.asarray(params, dtype=float), omega)[0]


def cpe_arc(r, q, alpha, omega):
    """Return R in parallel with a CPE, and its derivatives by ln R, ln Q and alpha.

    Z = R / (1 + R Q (j omega)^alpha).
    """
    log_jw = np.log(omega) + 0.5j * np.pi  # ln(j omega); (j omega)^alpha without a complex power
    s = np.exp(alpha * np.log(omega)) * np.exp(0.5j * np.pi * alpha)
    d = 1 + r * q * s
    z = r / d
    dz_dlnr = z / d
    dz_dlnq = -z * (d - 1) / d
    dz_dalpha = dz_dlnq * log_jw
    return z, dz_dlnr, dz_dlnq, dz_dalpha


def cpe(q, alpha, omega):
    """Return a CPE, Z = 1 / (Q (j omega)^alpha), and its derivatives by ln Q and alpha."""
    log_jw = np.log(omega) + 0.5j * np.pi
    z = np.exp(-alpha * log_jw) / q
    return z, -z, -z * log_jw


def _bulk_interface(p, omega):
    r0, r1, q1, a1, r2, q2, a2 = p
    arc1, arc2 = cpe_arc(r1, q1, a1, omega), cpe_arc(r2, q2, a2, omega)
    z = r0 + arc1[0] + arc2[0]
    return z, np.array([np.full_like(z, r0), *arc1[1:], *arc2[1:]])


def _blocking(p, omega):
    r0, r1, q1, a1, q2, a2 = p
    arc1, spur = cpe_arc(r1, q1, a1, omega), cpe(q2, a2, omega)
    z = r0 + arc1[0] + spur[0]
    return z, np.array([np.full_like(z, r0), *arc1[1:], *spur[1:]])


def _three_arcs(p, omega):
    r0 = p[0]
    arcs = [cpe_arc(*p[k:k + 3], omega) for k in (1, 4, 7)]
    z = r0 + sum(arc[0] for arc in arcs)
    return z, np.array([np.full_like(z, r0), *(d for arc in arcs for d in arc[1:])])


def _shorted(p, omega):
    r0, rs = p[:2]
    cell, d_cell = _bulk_interface(np.array([0.0, *p[2:]]), omega)  # the cell without leads
    z_short = rs * cell / (rs + cell)
    d_through = (rs / (rs + cell)) ** 2  # dZ/dZ_cell
    return r0 + z_short, np.array([np.full_like(cell, r0), z_short**2 / rs, *(d_through * d_cell[1:])])


BULK_INTERFACE = Circuit(
    name="R0-p(R1,CPE1)-p(R2,CPE2)",
    parameters=("R0", "R1", "Q1", "a1", "R2", "Q2", "a2"),
    roles={"series": "R0", "bulk": "R1", "interface": "R2"},
    evaluate=_bulk_interface,
)
"""A symmetric cell: leads, the bulk arc (MHz) and both interfaces together (Hz to kHz)."""

BLOCKING = Circuit(
    name="R0-p(R1,CPE1)-CPE2",
    parameters=("R0", "R1", "Q1", "a1", "Q2", "a2"),
    roles={"series": "R0", "bulk": "R1"},
    evaluate=_blocking,
)
"""A blocking cell (Ni/LLZTO/Ni): the bulk arc, then the double-layer spur; no charge transfer."""

THREE_ARCS = Circuit(
    name="R0-p(R1,CPE1)-p(R2,CPE2)-p(R3,CPE3)",
    parameters=("R0", "R1", "Q1", "a1", "R2", "Q2", "a2", "R3", "Q3", "a3"),
    roles={"series": "R0", "bulk": "R1", "grain_boundary": "R2", "interface": "R3"},
    evaluate=_three_arcs,
)
"""A polycrystalline pellet's cell: bulk (grains), grain boundaries, interfaces, fastest first."""

SHORTED = Circuit(
    name="R0-p(Rs,p(R1,CPE1)-p(R2,CPE2))",
    parameters=("R0", "Rs", "R1", "Q1", "a1", "R2", "Q2", "a2"),
    roles={"series": "R0", "short": "Rs", "bulk": "R1", "interface": "R2"},
    evaluate=_shorted,
)
"""A shorted cell as the physics has it: the lithium filament, a resistor Rs, across the whole cell
(bulk and interface arcs), the leads R0 in series. Rs is the short's resistance; the cell behind it
is seen only through it, so its arcs are often not determined (and are reported so)."""
