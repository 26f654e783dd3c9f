"""Potentiostat techniques as typed values (SI units), the way a plan asks for them.

Each technique says what the channel does and for how long. The BioLogic binding turns them into
EC-Lab Development Package parameter lists; the simulator runs them on the cell model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OCV:
    """Rest at open circuit, recording Ewe."""

    duration: float
    sample_interval: float = 1.0


@dataclass(frozen=True)
class CP:
    """Constant current (chronopotentiometry); ``current < 0`` plates lithium on the WE."""

    current: float
    duration: float
    sample_interval: float = 1.0


@dataclass(frozen=True)
class CA:
    """Constant voltage (chronoamperometry), e.g. the DC step on a blocking cell."""

    voltage: float
    duration: float
    sample_interval: float = 1.0


@dataclass(frozen=True)
class GEIS:
    """Galvanostatic impedance: a sine of ``amplitude`` (A) on top of a DC ``bias`` current (A)."""

    bias: float
    amplitude: float
    f_max: float = 7e6
    f_min: float = 0.5
    points_per_decade: int = 10
    cycles: int = 2  # periods averaged per frequency

    def frequencies(self) -> np.ndarray:
        return sweep_frequencies(self.f_max, self.f_min, self.points_per_decade)


@dataclass(frozen=True)
class PEIS:
    """Potentiostatic impedance: a sine of ``amplitude`` (V) around the open-circuit voltage."""

    amplitude: float
    f_max: float = 3.7e6
    f_min: float = 1.0
    points_per_decade: int = 10
    cycles: int = 2

    def frequencies(self) -> np.ndarray:
        return sweep_frequencies(self.f_max, self.f_min, self.points_per_decade)


@dataclass(frozen=True)
class Limit:
    """An instrument-side test on a step: true while ``variable`` is at or past ``value``.

    ``variable`` is ``"Ewe"`` (V) or ``"I"`` (A); ``above`` selects ``>=`` (True) or ``<=`` (False).
    Up to three limits combine left to right; ``and_previous`` joins this one to those before it by
    AND instead of OR.
    """

    variable: str
    above: bool
    value: float
    and_previous: bool = False


@dataclass(frozen=True)
class CPLIMIT:
    """Constant current that the instrument itself stops when its ``limits`` are met.

    ``on_limit`` says what the channel does then: ``"next step"``, ``"next technique"`` or ``"stop"``.
    """

    current: float
    duration: float
    limits: tuple[Limit, ...] = ()
    sample_interval: float = 1.0
    on_limit: str = "stop"


@dataclass(frozen=True)
class CALIMIT:
    """Constant voltage that the instrument itself stops when its ``limits`` are met (see CPLIMIT)."""

    voltage: float
    duration: float
    limits: tuple[Limit, ...] = ()
    sample_interval: float = 1.0
    on_limit: str = "stop"


@dataclass(frozen=True)
class LOOP:
    """Go back to the linked technique ``to_technique`` (0-based) ``repeat`` more times."""

    repeat: int
    to_technique: int = 0


TimedTechnique = OCV | CP | CA
ImpedanceTechnique = GEIS | PEIS


def sweep_frequencies(f_max: float, f_min: float, points_per_decade: int) -> np.ndarray:
    """Return a logarithmic sweep from ``f_max`` down to ``f_min``, as EC-Lab runs it."""
    count = int(round(np.log10(f_max / f_min) * points_per_decade)) + 1
    return np.logspace(np.log10(f_max), np.log10(f_min), count)


def sweep_duration(technique: ImpedanceTechnique) -> float:
    """Return how long a sweep takes: ``cycles`` periods per frequency plus settling per point."""
    frequencies = technique.frequencies()
    return float(np.sum(technique.cycles / frequencies) + 0.1 * len(frequencies))
