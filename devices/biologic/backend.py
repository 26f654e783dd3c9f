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
latest sample are asked for. Each poll drains the channel's memory, one buffer at a time, so a
failure loses none already read.

Faults: a call that fails with a code in ``TRANSIENT`` (a timeout, a garbled reply, a dropped
session) is tried again, after a backoff that doubles each time, on a fresh session (``BL_Disconnect``,
``BL_Connect``, the kernel reloaded if the channel lost it). The instrument runs on while the link is
down, so a technique survives a short outage with every record. When every attempt has failed the
backend raises :class:`~devices.errors.InstrumentLost` naming the instrument and its address; any
other error code raises :class:`~devices.errors.InstrumentFault` at once. A loss found while a
technique runs (by a poll) ends it with that error, which fails the device's status. The channel may
still be running on the instrument then, so ``stop()`` keeps trying to open the circuit (one attempt
a call, the retries having been spent) and, when it cannot, raises saying so and what still stops
the channel: the technique's own end and its safety limits.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from devices.biologic import eclib
from devices.biologic.data import DataReader, Frame, impedance
from devices.biologic.ecc import Hardware, load_sequence
from devices.biologic.techniques import CA, CALIMIT, CP, CPLIMIT, GEIS, PEIS, Limit, sweep_duration
from devices.errors import InstrumentFault, InstrumentLost
from devices.retry import Poller, RetryPolicy, retry
from labctl.core.clock import Clock
from labctl.core.errors import CurrentOutOfRange

log = logging.getLogger(__name__)

EMPTY_ROWS = {"time": np.empty(0), "Ewe": np.empty(0), "I": np.empty(0)}
# Return codes worth another try on a fresh session: the link or a reply failed, not the request.
TRANSIENT = frozenset({
    eclib.ErrorCode.GEN_NOTCONNECTED,  # the session dropped
    eclib.ErrorCode.GEN_CONNECTIONINPROGRESS,
    eclib.ErrorCode.GEN_FUNCTIONINPROGRESS,
    eclib.ErrorCode.INSTR_RESPERROR,  # a reply that made no sense
    eclib.ErrorCode.COMM_COMMFAILED,
    eclib.ErrorCode.COMM_CONNECTIONFAILED,
    eclib.ErrorCode.COMM_WAITINGACK,  # no reply in time
    eclib.ErrorCode.TECH_DATACORRUPTED,  # a data buffer that arrived corrupted
})


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
    attempts : int
        Tries per library call before the instrument counts as lost.
    backoff, max_backoff : float
        First and longest wait between attempts, s; the wait doubles each time.
    sleep : callable
        How to wait between attempts (``time.sleep``; tests pass a recorder).
    """

    def __init__(self, lib: eclib.EClib, clock: Clock, *, address: str = "USB0", channel: int = 1,
                 voltage_window=(-10.0, 10.0), current_limit: float = 0.01, poll_interval: float = 60.0,
                 name: str = "potentiostat", attempts: int = 4, backoff: float = 0.05, max_backoff: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.lib, self.clock, self.name, self.poll_interval = lib, clock, name, poll_interval
        self.voltage_window, self.current_limit = tuple(voltage_window), current_limit
        self.address, self.channel = address, channel - 1
        self.where = f"{address}, channel {channel}"
        self.policy, self.sleep = RetryPolicy(attempts, backoff, max_backoff), sleep
        self.device_id: int | None = None
        self.reader: DataReader | None = None
        self.reconnects = 0  # sessions reopened after the first, for logs and tests
        self.failure: InstrumentFault | None = None  # why the instrument was given up on, until a stop reaches it
        self._session_lost = True  # connect before the first call
        board_type, info, values = self._retrying("connecting", self._describe_channel)
        self.hardware = Hardware(board_type, info.MinIRange, info.MaxIRange, info.MaxBandwidth,
                                 self.voltage_window, current_limit)
        self.reader = DataReader(lib, self._device, self.channel, board_type)
        self.technique = None
        self.end_reason: str | None = None
        self._lock = threading.RLock()
        self._poller = Poller(clock, poll_interval, self._poll_tick)
        self._end = clock.now()
        self._rows: list[dict[str, np.ndarray]] = []
        self._dc: list[dict[str, np.ndarray]] = []
        self._sweep: list[Frame] = []
        self._spectrum: dict | None = None
        self._on_done: Callable[..., None] | None = None
        self._latest = {"time": clock.now(), "Ewe": float(values.Ewe), "I": 0.0}

    def _describe_channel(self):
        """Return the channel's board type, information and current values."""
        board_type = self.lib.board_type(self._device, self.channel)
        info = self.lib.channel_info(self._device, self.channel)
        return board_type, info, self.lib.current_values(self._device, self.channel)

    @property
    def _device(self) -> int:
        """Get the session's device id: every call to the instrument runs in a session (``_in_session``)."""
        if self.device_id is None:
            raise RuntimeError(f"{self.name} at {self.where}: no session with the instrument")
        return self.device_id

    @property
    def running(self) -> bool:
        """Get whether a technique is running on the channel (as of the last poll)."""
        return self.technique is not None

    # ---- the link ------------------------------------------------------------------------------
    def _connect(self) -> None:
        """Open a fresh session: drop the old one, ``BL_Connect``, load the kernel if the channel lacks it."""
        if self.device_id is not None:
            self.reconnects += 1
            try:
                self.lib.disconnect(self._device)
            except eclib.EClibError:
                pass  # a session on a dead link cannot be closed cleanly; BL_Connect replaces it
        self.device_id, self.device_info = self.lib.connect(self.address)
        if self.lib.channel_info(self.device_id, self.channel).FirmwareCode != eclib.FIRMWARE_KERNEL:
            self.lib.load_firmware(self.device_id, [self.channel])
        if self.reader is not None:
            self.reader.device_id = self.device_id
        self._session_lost = False

    def _retrying(self, what: str, call: Callable, attempts: int | None = None):
        """Return ``call()``, retrying transient failures on a fresh session; raise naming the instrument.

        Raises
        ------
        InstrumentLost
            Every attempt failed with a transient code.
        InstrumentFault
            The library returned any other error code.
        """
        policy = self.policy if attempts is None else self.policy.with_attempts(attempts)
        return retry(lambda: self._in_session(what, call), policy=policy, transient=self._transient,
                     give_up=lambda error, tries: self._lost(what, error, tries),
                     on_failure=self._drop_session, sleep=self.sleep, label=f"{self.name} at {self.where}: {what}")

    def _in_session(self, what: str, call: Callable):
        """Return ``call()`` on an open session; a non-transient library error names the instrument."""
        try:
            if self._session_lost:
                self._connect()
            return call()
        except eclib.EClibError as error:
            if error.code not in TRANSIENT:
                raise InstrumentFault(self.name, self.where, f"{what}: {error}") from error
            raise

    @staticmethod
    def _transient(error: BaseException) -> bool:
        return isinstance(error, eclib.EClibError) and error.code in TRANSIENT

    def _drop_session(self, error: BaseException) -> None:
        self._session_lost = True  # the next attempt starts with BL_Disconnect, BL_Connect

    def _lost(self, what: str, error: BaseException, attempts: int) -> InstrumentLost:
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts, reconnecting before each retry"
        return InstrumentLost(
            self.name, self.where,
            f"{what}: no valid reply after {tries} (last: {error}); check the instrument's power, cable or network",
        )

    def _give_up(self, failure: InstrumentFault) -> None:
        """Take ``failure`` as final: end the running technique with it, so its status fails."""
        self.failure = failure
        if self.running:
            self._finish("instrument lost", failure)

    # ---- starting ------------------------------------------------------------------------------
    def start(self, technique, on_done: Callable[..., None] | None = None) -> float:
        """Load and start ``technique`` now; return when it should end.

        ``on_done(reason, failure)`` runs at its end; ``failure`` is the :class:`InstrumentFault` that
        ended it if the instrument was lost, else None.
        """
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.name}: channel busy, stop the running technique first")
            self._check_current(technique)
            sequence = [self._with_limits(technique)]
            try:
                self._retrying("loading and starting the technique", lambda: self._load_and_start(sequence))
            except InstrumentFault as failure:
                self.failure = failure  # it may have started before the link failed: stop() tries to make sure
                raise
            self.failure = None  # the channel was stopped, or it could not have been loaded
            now = self.clock.now()
            self.technique, self.end_reason, self._on_done = technique, None, on_done
            self._start, self._end = now, now + self._duration(technique)
            self._dc, self._sweep, self._spectrum = [], [], None
            self._poller.start(self._end)
            return self._end

    def _load_and_start(self, sequence) -> None:
        load_sequence(self.lib, self._device, self.channel, sequence, self.hardware)
        self.lib.start_channel(self._device, self.channel)

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
    def _poll_tick(self) -> bool:
        """Poll for the poller; return whether the technique still runs."""
        self._poll()
        return self.running

    def _poll(self) -> None:
        """Drain the channel's memory; finish the technique if the channel has stopped, or if it is lost."""
        with self._lock:
            if not self.running:
                return
            try:
                stopped = self._drain()
            except InstrumentFault as failure:
                self._give_up(failure)
                return
            if stopped:
                self._finish(self._reason())

    def _drain(self) -> bool:
        """Take every buffer the channel holds; return whether the channel has stopped.

        The state comes with the call that found the memory empty, so "stopped" means every record
        of the technique has been taken.
        """
        reader = self.reader
        if reader is None:  # the constructor makes it, once connected
            raise RuntimeError(f"{self.name} at {self.where}: no session with the instrument")
        while (frame := self._retrying("reading data", reader.read)) is not None:
            self._take(frame)
        return reader.values.State == eclib.STATE_STOP

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

    def _finish(self, reason: str, failure: InstrumentFault | None = None) -> None:
        technique, self.technique, self.end_reason = self.technique, None, reason
        self._poller.stop()
        if isinstance(technique, (GEIS, PEIS)) and failure is None:
            self._spectrum = self._assemble_spectrum(technique)
        if self._on_done is not None:
            self._on_done(reason, failure)

    def _assemble_spectrum(self, technique) -> dict:
        z = np.concatenate([impedance(f) for f in self._sweep]) if self._sweep else np.empty(0, complex)
        frequency = np.concatenate([f.columns["frequency"] for f in self._sweep]) if self._sweep else np.empty(0)
        dc = {key: np.concatenate([r[key] for r in self._dc]) for key in EMPTY_ROWS} if self._dc else None
        bias = technique.bias if isinstance(technique, GEIS) else 0.0
        return {
            "frequency": frequency,
            "z_real": np.real(z),
            "z_imag": np.imag(z),
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
        """Return the most recent sample (time, Ewe, I), reading the channel first (the last one read, if lost)."""
        self._poll()
        return dict(self._latest)

    def open_circuit_values(self) -> dict[str, float]:
        """Return (time, Ewe, I = 0) read from the idle channel now: the cell's open-circuit voltage.

        For a paused channel. If the instrument cannot be read, the last sample's voltage, with I = 0.
        """
        with self._lock:
            self._poll()
            if self.failure is None and not self.running:
                try:
                    values = self._retrying("reading the open-circuit voltage",
                                            lambda: self.lib.current_values(self._device, self.channel), 1)
                    return {"time": self.clock.now(), "Ewe": float(values.Ewe), "I": 0.0}
                except InstrumentFault:
                    pass
            return {**self._latest, "I": 0.0}

    def read_spectrum(self) -> dict | None:
        """Return the last finished impedance sweep (frequency, Z', Z'', DC Ewe and I), once."""
        spectrum, self._spectrum = self._spectrum, None
        return spectrum

    def stop(self) -> None:
        """Open the circuit now (``BL_StopChannel``), keeping every record measured so far.

        Raises
        ------
        InstrumentFault
            The circuit could not be opened: the message says why, and what still stops the channel.
        """
        with self._lock:
            self._poll()  # it may have ended on its own already, or be found lost
            if not self.running and self.failure is None:
                return
            # A lost instrument has had its retries: one attempt a call, so a failing plan's cleanup does not wait long.
            attempts = 1 if self.failure is not None else None
            try:
                self._retrying("opening the circuit", lambda: self.lib.stop_channel(self._device, self.channel),
                               attempts)
            except InstrumentFault as failure:
                # The error goes to the caller: failing the technique's status as well would throw a
                # second one into the plan's cleanup.
                self.failure = failure
                if self.running:
                    self._finish("instrument lost")
                raise type(failure)(self.name, self.where, f"{failure.detail}; {self._still_stops()}") from failure
            self.failure = None
            try:
                self._drain()  # the circuit is open: a failure here loses records, not the safe state
            finally:
                if self.running:
                    self._finish("stopped")

    def _still_stops(self) -> str:
        """Say what opens the circuit on the instrument without this process."""
        left = self._end - self.clock.now()
        when = f"within {left:.0f} s" if left > 0 else "at its set duration"
        return f"the channel still ends the technique it may be running {when}, its safety limits before that"

    def close(self) -> None:
        """Stop the channel and disconnect from the instrument."""
        self.stop()
        self.lib.disconnect(self._device)
