"""The potentiostat channel's backend on the EC-Lab library: binding, encoder and parser together.

:class:`EClibBackend` offers what ``PotentiostatChannel`` calls (``start``, ``read_rows``,
``latest``, ``read_spectrum``, ``stop``, ``running``, ``end_reason``) over any
:class:`~devices.biologic.eclib.EClib`: the vendor's DLL on the
bench, ``devices.sim.eclib.SimEClib`` in tests. Safety is instrument-side: a constant current runs as
CPLIMIT with the lab file's voltage window as its limits, a constant voltage as CALIMIT with the
current limit, both with "stop" as exit condition, so the channel opens the circuit by itself even if
this process hangs. ``stop()`` is ``BL_StopChannel``: the channel returns to open circuit and every
record already measured is still read out.

The library has no callbacks, so the backend polls on the session clock: at the technique's
expected end, every ``poll_interval`` before it (a limit can end it early), and whenever rows or the
latest sample are asked for. Each poll drains the channel's memory.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np

from devices.biologic import eclib
from devices.biologic.data import DataReader, Frame, impedance
from devices.biologic.ecc import Hardware, load_sequence
from devices.biologic.techniques import CA, CALIMIT, CP, CPLIMIT, GEIS, PEIS, Limit, sweep_duration
from labctl.clock import Clock, Scheduled
from labctl.errors import CurrentOutOfRange

EMPTY_ROWS = {"time": np.empty(0), "Ewe": np.empty(0), "I": np.empty(0)}
LATE_POLL = 1.0  # s between polls once the expected end has passed


class EClibBackend:
    """One channel of a BioLogic potentiostat driven through the EC-Lab library.

    Parameters
    ----------
    lib : eclib.EClib
        The binding, around the real DLL or a simulated library.
    clock : Clock
        The session clock: polls are scheduled on it and rows are stamped with it.
    address : str
        The instrument's address for ``BL_Connect`` (an IP address, or ``USB0``).
    channel : int
        The channel, 1-based as in EC-Lab and the lab file.
    voltage_window : (float, float)
        Instrument-side limits on Ewe - Ece, V: a constant current stops when it reaches them.
    current_limit : float
        Largest current, A: larger requests are refused, and a constant voltage stops at it.
    poll_interval : float
        Longest time between two reads of the channel while a technique runs, s.
    name : str
        Used in error messages.
    """

    def __init__(self, lib: eclib.EClib, clock: Clock, *, address: str = "USB0", channel: int = 1,
                 voltage_window=(-10.0, 10.0), current_limit: float = 0.01, poll_interval: float = 60.0,
                 name: str = "potentiostat"):
        self.lib, self.clock, self.name, self.poll_interval = lib, clock, name, poll_interval
        self.voltage_window, self.current_limit = tuple(voltage_window), current_limit
        self.device_id, self.device_info = lib.connect(address)
        self.channel = channel - 1
        if lib.channel_info(self.device_id, self.channel).FirmwareCode != eclib.FIRMWARE_KERNEL:
            lib.load_firmware(self.device_id, [self.channel])
        board_type = lib.board_type(self.device_id, self.channel)
        info = lib.channel_info(self.device_id, self.channel)
        self.hardware = Hardware(board_type, info.MinIRange, info.MaxIRange, info.MaxBandwidth,
                                 self.voltage_window, current_limit)
        self.reader = DataReader(lib, self.device_id, self.channel, board_type)
        self.technique = None
        self.end_reason: str | None = None
        self._lock = threading.RLock()
        self._poll_event: Scheduled | None = None
        self._rows: list[dict[str, np.ndarray]] = []
        self._dc: list[dict[str, np.ndarray]] = []
        self._sweep: list[Frame] = []
        self._spectrum: dict | None = None
        self._on_done: Callable[[str], None] | None = None
        values = lib.current_values(self.device_id, self.channel)
        self._latest = {"time": clock.now(), "Ewe": float(values.Ewe), "I": 0.0}

    @property
    def running(self) -> bool:
        """Get whether a technique is running on the channel (as of the last poll)."""
        return self.technique is not None

    # ---- starting ------------------------------------------------------------------------------
    def start(self, technique, on_done: Callable[[str], None] | None = None) -> float:
        """Load and start ``technique`` now; return when it should end. ``on_done(reason)`` runs at its end."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.name}: channel busy, stop the running technique first")
            self._check_current(technique)
            load_sequence(self.lib, self.device_id, self.channel, [self._with_limits(technique)], self.hardware)
            self.lib.start_channel(self.device_id, self.channel)
            now = self.clock.now()
            self.technique, self.end_reason, self._on_done = technique, None, on_done
            self._start, self._end = now, now + self._duration(technique)
            self._dc, self._sweep, self._spectrum = [], [], None
            self._schedule_poll()
            return self._end

    def _check_current(self, technique) -> None:
        current = abs(getattr(technique, "current", getattr(technique, "bias", 0.0)))
        current += getattr(technique, "amplitude", 0.0) if isinstance(technique, GEIS) else 0.0
        if current > self.current_limit:
            raise CurrentOutOfRange(self.name, current, self.current_limit)

    def _with_limits(self, technique):
        """Return what the instrument runs: constant current or voltage with the safety limits."""
        low, high = self.voltage_window
        if isinstance(technique, CP):
            window = (Limit("Ewe", False, low), Limit("Ewe", True, high))
            return CPLIMIT(technique.current, technique.duration, window, technique.sample_interval, "stop")
        if isinstance(technique, CA):
            limit = self.current_limit
            window = (Limit("I", False, -limit), Limit("I", True, limit))
            return CALIMIT(technique.voltage, technique.duration, window, technique.sample_interval, "stop")
        return technique

    @staticmethod
    def _duration(technique) -> float:
        if isinstance(technique, (GEIS, PEIS)):
            return sweep_duration(technique)
        return float(np.float32(technique.duration))  # the instrument's duration is a single

    # ---- polling -------------------------------------------------------------------------------
    def _schedule_poll(self) -> None:
        now = self.clock.now()
        when = min(now + self.poll_interval, self._end) if now < self._end else now + LATE_POLL
        self._poll_event = self.clock.call_at(when, self._poll_tick)

    def _poll_tick(self) -> None:
        self._poll()
        if self.running:
            self._schedule_poll()

    def _poll(self) -> None:
        """Drain the channel's memory; finish the technique if the channel has stopped."""
        with self._lock:
            if not self.running:
                return
            frames, stopped = self.reader.drain()
            for frame in frames:
                self._take(frame)
            if stopped:
                self._finish(self._reason())

    def _take(self, frame: Frame) -> None:
        columns = frame.columns
        if frame.process == 1:
            self._sweep.append(frame)
            return
        rows = {"time": self._start + columns["time"], "Ewe": columns["Ewe"],
                "I": columns.get("I", np.zeros(len(frame)))}
        (self._dc if isinstance(self.technique, (GEIS, PEIS)) else self._rows).append(rows)
        self._latest = {key: float(values[-1]) for key, values in rows.items()}

    def _reason(self) -> str:
        """Say why the channel stopped on its own: a safety limit tripped, or the technique ran out."""
        low, high = self.voltage_window
        if isinstance(self.technique, (CP, CPLIMIT)) and not low < self._latest["Ewe"] < high:
            return "voltage limit"
        if isinstance(self.technique, (CA, CALIMIT)) and abs(self._latest["I"]) >= self.current_limit:
            return "current limit"
        return "completed"

    def _finish(self, reason: str) -> None:
        technique, self.technique, self.end_reason = self.technique, None, reason
        if self._poll_event is not None:
            self._poll_event.cancel()
        if isinstance(technique, (GEIS, PEIS)):
            self._spectrum = self._assemble_spectrum(technique)
        if self._on_done is not None:
            self._on_done(reason)

    def _assemble_spectrum(self, technique) -> dict:
        z = np.concatenate([impedance(f) for f in self._sweep]) if self._sweep else np.empty(0, complex)
        frequency = np.concatenate([f.columns["frequency"] for f in self._sweep]) if self._sweep else np.empty(0)
        dc = {key: np.concatenate([r[key] for r in self._dc]) for key in EMPTY_ROWS} if self._dc else None
        bias = technique.bias if isinstance(technique, GEIS) else 0.0
        return {
            "frequency": frequency,
            "z_real": z.real,
            "z_imag": z.imag,
            "Ewe": float(np.mean(dc["Ewe"])) if dc else self._latest["Ewe"],
            "I": float(np.mean(dc["I"])) if dc else bias,
            "time": self._start,
            "duration": self.clock.now() - self._start,
        }

    # ---- what the channel reads ----------------------------------------------------------------
    def read_rows(self) -> dict[str, np.ndarray]:
        """Return the (time, Ewe, I) rows of timed techniques measured since the last call."""
        with self._lock:
            self._poll()
            rows, self._rows = self._rows, []
        if not rows:
            return dict(EMPTY_ROWS)
        return {key: np.concatenate([r[key] for r in rows]) for key in EMPTY_ROWS}

    def latest(self) -> dict[str, float]:
        """Return the most recent sample (time, Ewe, I), reading the channel first."""
        self._poll()
        return dict(self._latest)

    def read_spectrum(self) -> dict | None:
        """Return the last finished impedance sweep (frequency, Z', Z'', DC Ewe and I), once."""
        spectrum, self._spectrum = self._spectrum, None
        return spectrum

    def stop(self) -> None:
        """Open the circuit now (``BL_StopChannel``), keeping every record measured so far."""
        with self._lock:
            self._poll()  # it may have ended on its own already
            if not self.running:
                return
            self.lib.stop_channel(self.device_id, self.channel)
            frames, _ = self.reader.drain()
            for frame in frames:
                self._take(frame)
            self._finish("stopped")

    def close(self) -> None:
        """Stop the channel and disconnect from the instrument."""
        self.stop()
        self.lib.disconnect(self.device_id)
