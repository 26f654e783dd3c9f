"""Impedance and transport analysis: equivalent-circuit fits, distributions of relaxation times,
Kramers-Kronig checks, conductivity, short-circuit detection.

A foundation package: numpy and scipy only, never devices or plans, so plans and callbacks can use
it during a run and scripts can use it on stored data.
"""

from labctl.core.analysis.circuits import BLOCKING, BULK_INTERFACE, SHORTED, THREE_ARCS, Circuit
from labctl.core.analysis.conductivity import (
    ArrheniusFit,
    CriticalCurrent,
    CriticalCurrentDetector,
    arrhenius_fit,
    critical_current_density,
    electronic_conductivity,
    ionic_conductivity,
    steady_current,
)
from labctl.core.analysis.drt import DRTResult, drt
from labctl.core.analysis.fitting import CIRCUITS, FitResult, fit_spectrum, initial_guess
from labctl.core.analysis.kk import KKResult, linear_kk
from labctl.core.analysis.shorts import ShortDetector

__all__ = [
    "BLOCKING", "BULK_INTERFACE", "SHORTED", "THREE_ARCS", "Circuit", "DRTResult", "drt",
    "ArrheniusFit", "CriticalCurrent", "CriticalCurrentDetector", "arrhenius_fit", "critical_current_density",
    "electronic_conductivity", "ionic_conductivity", "steady_current",
    "CIRCUITS", "FitResult", "fit_spectrum", "initial_guess",
    "KKResult", "linear_kk",
    "ShortDetector",
]
