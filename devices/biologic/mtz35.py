"""BioLogic MTZ-35 impedance analyser: its published limits, and the backend up to the instrument link.

BioLogic runs the MTZ-35 from its MT-Lab software and publishes no programming interface for it:
the EC-Lab Development Package (``EClib``) has no device code for it (its ``TDeviceType_e`` /
kbio ``DEVICE`` enumeration lists potentiostats only), EC-Lab's OLE/COM server drives EC-Lab
instruments, and no SCPI command set, MT-Lab automation interface or third-party driver for the
MTZ-35 is public (README, "The MTZ-35 impedance analyser"). So the backend stops at
:class:`MTZ35Link`, five calls that are labctl's own seam and not a BioLogic protocol: the simulator
(``devices.sim.mtz35.SimMTZ35``) implements them; for a real MTZ-35 an adapter to whatever interface
BioLogic provides would have to, and none exists.

Everything above the link is real and runs in every test: the instrument's limits checked before a
sweep is sent, the sweep's frequencies, polling on the session clock, and the spectrum handed to the
device in the same shape as the SP-200's (``frequency``, ``z_real``, ``z_imag``).
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

import numpy as np

from devices.biologic.techniques import PEIS, sweep_duration
from devices.retry import Poller
from labctl.core.clock import Clock
from labctl.core.errors import LimitError

FREQUENCY_RANGE = (10e-6, 35e6)  # Hz, BioLogic's MTZ-35 specification
# V: MT-Lab application note #01, "the dc component cannot exceed the internal generator level of
# +/- 10 V". No public source states the AC amplitude range; a sine's peak cannot pass this level.
GENERATOR_LEVEL = 10.0


class MTZ35Link(Protocol):
    """What :class:`MTZ35Backend` needs from the instrument: labctl's seam, not a BioLogic interface."""

    def start(self, frequencies: np.ndarray, amplitude: float, cycles: int) -> None:
        """Sweep ``frequencies`` in order with a sine of ``amplitude`` V peak, ``cycles`` periods each."""
        ...

    def busy(self) -> bool:
        """Return whether the sweep is still running."""
        ...

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the frequencies (Hz) and complex impedances (ohm) the sweep has finished so far."""
        ...

    def stop(self) -> None:
        """Switch the generator off now; the points already measured stay readable."""
        ...


def check_sweep(technique: PEIS, max_amplitude: float, name: str) -> None:
    """Raise :class:`~labctl.core.errors.LimitError` unless the MTZ-35 can run ``technique`` within the lab's cap.

    Parameters
    ----------
    technique : PEIS
        The sweep asked for.
    max_amplitude : float
        The lab file's cap on the amplitude, V (at most :data:`GENERATOR_LEVEL`).
    name : str
        The device's name, for the message.
    """
    if not isinstance(technique, PEIS):
        raise TypeError(f"{name} measures potentiostatic spectra (PEIS), not {type(technique).__name__}")
    low, high = FREQUENCY_RANGE
    for quantity, value in (("f_max", technique.f_max), ("f_min", technique.f_min)):
        if not low <= value <= high:
            raise LimitError(name, quantity, value, FREQUENCY_RANGE, unit="Hz",
                             fix="the MTZ-35 sweeps between 10 uHz and 35 MHz")
    if technique.f_min >= technique.f_max:
        raise LimitError(name, "f_min", technique.f_min, (low, technique.f_max), unit="Hz",
                         fix="f_min must lie below f_max")
    if not 0 < technique.amplitude <= max_amplitude:
        raise LimitError(name, "amplitude", technique.amplitude, (0.0, max_amplitude), unit="mV",
                         fix="lower the amplitude, or raise max_amplitude in the lab file")
    if technique.cycles < 1 or technique.points_per_decade < 1:
        raise ValueError(f"{name}: cycles and points_per_decade must be at least 1")


class MTZ35Backend:
    """The MTZ-35 for :class:`~devices.biologic.analyser.ImpedanceAnalyser`, over an :class:`MTZ35Link`.

    Offers ``check``, ``start``, ``read_spectrum``, ``stop`` and ``running``, as the SP-200's
    ``EClibBackend`` does for its impedance meter. The link has no callbacks, so the backend polls on
    the session clock: at the sweep's expected end, every ``poll_interval`` before it and every
    second after it.

    Parameters
    ----------
    link : MTZ35Link
        The instrument (in this repository, only the simulator implements it).
    clock : Clock
        The session clock: polls are scheduled on it and spectra are stamped with it.
    max_amplitude : float
        The lab file's cap on the sine amplitude, V; at most the generator level, 10 V.
    poll_interval : float
        Longest time between two looks at the instrument while a sweep runs, s.
    name : str
        Used in messages.
    """

    def __init__(self, link: MTZ35Link, clock: Clock, *, max_amplitude: float, poll_interval: float = 60.0,
                 name: str = "impedance_analyser"):
        if not 0 < max_amplitude <= GENERATOR_LEVEL:
            raise ValueError(f"{name}: max_amplitude {max_amplitude:g} V must lie in (0, {GENERATOR_LEVEL:g}] V")
        self.link, self.clock, self.name = link, clock, name
        self.max_amplitude, self.poll_interval = max_amplitude, poll_interval
        self.technique: PEIS | None = None
        self.end_reason: str | None = None
        self._lock = threading.RLock()
        self._poller = Poller(clock, poll_interval, self._poll)
        self._spectrum: dict | None = None
        self._on_done: Callable[[str], None] | None = None

    @property
    def running(self) -> bool:
        """Get whether a sweep is running (as of the last poll)."""
        return self.technique is not None

    def check(self, technique: PEIS) -> None:
        """Refuse a sweep the instrument cannot run or the lab does not allow; send nothing."""
        check_sweep(technique, self.max_amplitude, self.name)

    def start(self, technique: PEIS, on_done: Callable[[str], None] | None = None) -> float:
        """Start ``technique`` now; return when it should end. ``on_done(reason)`` runs at its end."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.name}: a sweep is running, stop it first")
            self.check(technique)
            self.link.start(technique.frequencies(), technique.amplitude, technique.cycles)
            self._start = self.clock.now()
            self._end = self._start + sweep_duration(technique)
            self.technique, self.end_reason, self._on_done, self._spectrum = technique, None, on_done, None
            self._poller.start(self._end)
            return self._end

    def _poll(self) -> bool:
        """Look at the sweep for the poller, finishing it once the link is done; return whether it still runs."""
        with self._lock:
            if self.running and not self.link.busy():
                self._finish("completed")
            return self.running

    def _finish(self, reason: str) -> None:
        frequencies, z = self.link.points()
        self._spectrum = {
            "frequency": np.asarray(frequencies, dtype=float),
            "z_real": np.real(z),
            "z_imag": np.imag(z),
            "time": self._start,
            "duration": self.clock.now() - self._start,
        }
        self.technique, self.end_reason = None, reason
        self._poller.stop()
        if self._on_done is not None:
            self._on_done(reason)

    def read_spectrum(self) -> dict | None:
        """Return the last finished sweep (frequency, Z', Z'', start time, duration), once."""
        spectrum, self._spectrum = self._spectrum, None
        return spectrum

    def stop(self) -> None:
        """Switch the generator off now, keeping the points measured; nothing to do when idle."""
        with self._lock:
            if not self.running:
                return
            if self.link.busy():
                self.link.stop()
                self._finish("stopped")
            else:
                self._finish("completed")
