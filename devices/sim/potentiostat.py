"""A simulated potentiostat channel: runs techniques on a :class:`SimCell` on the virtual clock.

It offers the in-process backend interface the ophyd channel talks to (``start``, ``read_rows``,
``read_spectrum``, ``stop``); the BioLogic issue moves this boundary down to a simulated EClib.
Data are produced lazily, when read or when the technique ends, so a day of 1 s sampling costs a
few vectorised passes, not a callback per point.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from devices.biologic.techniques import CA, CP, GEIS, OCV, PEIS, sweep_duration
from devices.sim.cell import SimCell
from labctl.clock import Scheduled, VirtualClock

EMPTY_ROWS = {"time": np.empty(0), "Ewe": np.empty(0), "I": np.empty(0)}


class SimPotentiostat:
    """One channel of a simulated potentiostat wired to ``cell``.

    Parameters
    ----------
    clock : VirtualClock
        The session clock; techniques end on it.
    cell : SimCell
        The cell on the channel.
    voltage_window : (float, float)
        Instrument-side safety limits on Ewe - Ece, V: a technique that reaches them stops.
    current_limit : float
        Largest current the channel will apply, A.
    """

    def __init__(self, clock: VirtualClock, cell: SimCell, voltage_window=(-10.0, 10.0), current_limit=0.01):
        self.clock = clock
        self.cell = cell
        self.voltage_window = voltage_window
        self.current_limit = current_limit
        self.technique = None
        self.end_reason: str | None = None
        self._pending: list[dict[str, np.ndarray]] = []
        self._spectrum: dict | None = None
        self._end_event: Scheduled | None = None
        self._on_done: Callable[[str], None] | None = None
        self._latest = {"time": clock.now(), "Ewe": cell.open_circuit_voltage(), "I": 0.0}

    @property
    def running(self) -> bool:
        return self.technique is not None

    def start(self, technique, on_done: Callable[[str], None] | None = None) -> float:
        """Start ``technique`` now; return the time it will end. ``on_done(reason)`` runs at the end."""
        if self.running:
            raise RuntimeError("channel busy: stop the running technique first")
        self._check_limits(technique)
        now = self.clock.now()
        self.cell.advance(now, 0.0)  # open circuit since the last technique
        self.technique, self.end_reason, self._on_done = technique, None, on_done
        self._start, self._produced_until, self._spectrum = now, now, None
        self._end = now + self._duration(technique)
        if isinstance(technique, (GEIS, PEIS)):
            self._frequencies = technique.frequencies()
            self._z = self.cell.impedance(self._frequencies)  # the cell as the sweep starts
        self._end_event = self.clock.call_at(self._end, lambda: self._finish("completed"))
        return self._end

    def _check_limits(self, technique) -> None:
        current = getattr(technique, "current", getattr(technique, "bias", 0.0))
        if abs(current) > self.current_limit:
            raise ValueError(
                f"{abs(current) * 1e3:.4g} mA exceeds the channel's current limit of {self.current_limit * 1e3:.4g} mA"
            )

    @staticmethod
    def _duration(technique) -> float:
        if isinstance(technique, (GEIS, PEIS)):
            return sweep_duration(technique)
        return technique.duration

    def read_rows(self) -> dict[str, np.ndarray]:
        """Return the (time, Ewe, I) rows measured since the last call."""
        if self.running and not isinstance(self.technique, (GEIS, PEIS)):
            self._produce(min(self.clock.now(), self._end))
        rows, self._pending = self._pending, []
        if not rows:
            return dict(EMPTY_ROWS)
        return {key: np.concatenate([r[key] for r in rows]) for key in EMPTY_ROWS}

    def latest(self) -> dict[str, float]:
        """Return the most recent sample (time, Ewe, I) without taking rows from the next page."""
        if self.running and not isinstance(self.technique, (GEIS, PEIS)):
            self._produce(min(self.clock.now(), self._end))
        return dict(self._latest)

    def read_spectrum(self) -> dict | None:
        """Return the last finished impedance sweep (frequency, Z', Z'', DC Ewe and I), once."""
        spectrum, self._spectrum = self._spectrum, None
        return spectrum

    def stop(self) -> None:
        """Open the circuit now, keeping every point measured so far."""
        if self.running:
            self._finish("stopped")

    def _produce(self, until: float) -> None:
        technique = self.technique
        step = technique.sample_interval
        first = np.floor((self._produced_until - self._start) / step + 1e-9) + 1
        last = np.floor((until - self._start) / step + 1e-9)
        if last < first:
            return
        times = self._start + step * np.arange(first, last + 1)
        if isinstance(technique, CA):
            current = self.cell.potentiostatic(times, technique.voltage)
            voltage = technique.voltage + self.cell.rng.normal(0, self.cell.params.voltage_noise, len(times))
        else:
            applied = technique.current if isinstance(technique, CP) else 0.0
            voltage = self.cell.galvanostatic(times, applied)
            current = np.full(len(times), applied) + self.cell.rng.normal(0, self.cell.params.current_noise, len(times))
        keep = self._within_window(voltage)
        self._pending.append({"time": times[:keep], "Ewe": voltage[:keep], "I": current[:keep]})
        self._produced_until = times[keep - 1] if keep else self._produced_until
        if keep:
            self._latest = {"time": float(times[keep - 1]), "Ewe": float(voltage[keep - 1]), "I": float(current[keep - 1])}
        if keep < len(times):
            self._end = times[keep - 1] if keep else self._start
            self._finish("voltage limit")

    def _within_window(self, voltage: np.ndarray) -> int:
        low, high = self.voltage_window
        outside = np.flatnonzero((voltage < low) | (voltage > high))
        return int(outside[0]) if outside.size else len(voltage)

    def _finish(self, reason: str) -> None:
        technique = self.technique
        if technique is None:
            return
        if self._end_event is not None:
            self._end_event.cancel()
        end = min(self.clock.now(), self._end) if reason == "stopped" else self._end
        if isinstance(technique, (GEIS, PEIS)):
            self._finish_sweep(technique, end)
        elif reason != "voltage limit":
            self._produce(end)
        self.technique, self.end_reason = None, reason
        if self._on_done is not None:
            self._on_done(reason)

    def _finish_sweep(self, technique, end: float) -> None:
        """Integrate the cell over the sweep (plating goes on under a GEIS bias) and keep the spectrum."""
        bias = technique.bias if isinstance(technique, GEIS) else 0.0
        times = np.linspace(self._start, end, 16)[1:]
        voltage = self.cell.galvanostatic(times, bias) if end > self._start else np.zeros(1)
        self._spectrum = {
            "frequency": self._frequencies,
            "z_real": self._z.real,
            "z_imag": self._z.imag,
            "Ewe": float(np.mean(voltage)),
            "I": bias,
            "time": self._start,
            "duration": end - self._start,
        }
