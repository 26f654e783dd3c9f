"""A simulated MTZ-35 behind :class:`~devices.biologic.mtz35.MTZ35Link`: the cell's impedance, point by point.

The sweep measures the cell model at open circuit on the session clock: the cell is brought up to
the sweep's start (so temperature, pressure and any short are those of that moment) and each
frequency is finished after ``cycles`` periods plus a settling time. The timing is an assumption,
the same as the simulated SP-200's, since BioLogic does not publish the MTZ-35's. Like the
instrument, the simulator refuses frequencies outside its range and a second sweep while one runs.
"""

from __future__ import annotations

import numpy as np

from devices.biologic.mtz35 import FREQUENCY_RANGE
from devices.sim.cell import SimCell
from labctl.core.clock import Clock

SETTLE = 0.1  # s per frequency, as the simulated SP-200's EIS


class SimMTZ35:
    """The simulated analyser: implements ``start``, ``busy``, ``points`` and ``stop`` on the cell model.

    Parameters
    ----------
    clock : Clock
        The session clock.
    cell : SimCell
        The cell the analyser is connected to.
    settle : float
        Time per frequency on top of the measured periods, s.
    """

    def __init__(self, clock: Clock, cell: SimCell, settle: float = SETTLE):
        self.clock, self.cell, self.settle = clock, cell, settle
        self.sweeps = 0  # sweeps started: what a test checks to know nothing was sent
        self._frequencies = np.empty(0)
        self._z = np.empty(0, dtype=complex)
        self._point_times = np.empty(0)
        self._stopped_at: float | None = None

    def start(self, frequencies: np.ndarray, amplitude: float, cycles: int) -> None:
        """Start a sweep now: ``frequencies`` in order, ``cycles`` periods each (amplitude in V, peak)."""
        frequencies = np.asarray(frequencies, dtype=float)
        low, high = FREQUENCY_RANGE
        if self.busy():
            raise RuntimeError("simulated MTZ-35: a sweep is running")
        if len(frequencies) == 0 or not np.all((frequencies >= low) & (frequencies <= high)) or amplitude <= 0:
            raise ValueError("simulated MTZ-35: frequencies must lie in [10 uHz, 35 MHz] and the amplitude be > 0")
        now = self.clock.now()
        self.cell.advance(now, 0.0)  # at open circuit until the sweep starts
        self._frequencies = frequencies
        self._z = self.cell.impedance(frequencies)
        self._point_times = now + np.cumsum(cycles / frequencies + self.settle)
        self._stopped_at = None
        self.sweeps += 1

    def _finished(self) -> int:
        until = self.clock.now() if self._stopped_at is None else self._stopped_at
        return int(np.searchsorted(self._point_times, until, side="right"))

    def busy(self) -> bool:
        """Return whether the sweep has frequencies left and has not been stopped."""
        return self._stopped_at is None and self._finished() < len(self._point_times)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the frequencies and impedances finished so far in the current (or last) sweep."""
        done = self._finished()
        return self._frequencies[:done], self._z[:done]

    def stop(self) -> None:
        """Switch the generator off: the frequency being measured is lost, the finished ones stay."""
        if self.busy():
            self._stopped_at = self.clock.now()
