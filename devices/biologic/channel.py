"""The potentiostat channel as ophyd devices: a flyer for timed techniques, and an impedance meter.

``PotentiostatChannel`` runs OCV, CP and CA as a flyer: ``prepare(technique)``, ``kickoff()``,
``complete()``, and ``collect`` in pages. Its rows go to an HDF5 file and reach bluesky as
StreamResource/StreamDatum documents, never one event per point. ``channel.eis`` measures one
impedance spectrum per ``trigger()``, read as one event with frequency, Z' and Z'' arrays.

The channel talks to a :class:`~devices.backends.PotentiostatBackend` (``start(technique, on_done)``,
``read_rows()``, ``latest()``, ``read_spectrum()``, ``stop()``): ``devices.biologic.backend.EClibBackend``.
``stop()`` and ``pause()`` put the cell at open circuit, keeping everything measured. A technique
the backend ends because the instrument is lost fails its status with that error (which names the
instrument and its address), so a plan waiting on it ends with that reason.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from devices.backends import PotentiostatBackend
from devices.biologic.techniques import GEIS, PEIS
from devices.common import ClockSignal, DeviceStatus, ReadbackSignal, finished_status, store_spectrum
from labctl.core.assets import FieldSpec, HDF5StreamWriter
from labctl.core.clock import Clock, VirtualClock

# Rows reach the HDF5 file (handed to the operating system, so they survive this process being
# killed) at least every DURABLE_INTERVAL seconds of session time while a technique runs, whatever
# the plan's page_interval: a SIGKILL loses at most that much (labctl recover announces the rows
# found after the last page). On a virtual clock the interval is SIMULATED_DURABLE_INTERVAL of
# session time: each write costs ~1-3 ms, and every 5 s a simulated day at 1 Hz would spend ~50 s
# in them. It is session time, not wall time, so that when the simulator is polled, and with it
# every number it gives, does not depend on the machine's speed (same seed, same data).
DURABLE_INTERVAL = 5.0  # s, session clock, on real hardware
SIMULATED_DURABLE_INTERVAL = 60.0  # s, session clock, on the simulated lab

ROW_FIELDS = {
    "time": FieldSpec(units="s"),
    "Ewe": FieldSpec(units="V"),
    "I": FieldSpec(units="A"),
    "charge": FieldSpec(units="C"),
}


class ImpedanceMeter(Device):
    """The channel's impedance measurement: ``prepare(GEIS(...))``, then ``trigger()`` and ``read()``."""

    sweep_start = Cpt(ClockSignal, value=0.0, units="s", kind="normal")
    frequency = Cpt(ClockSignal, value=np.zeros(0), units="Hz", kind="normal")
    z_real = Cpt(ClockSignal, value=np.zeros(0), units="ohm", kind="normal")
    z_imag = Cpt(ClockSignal, value=np.zeros(0), units="ohm", kind="normal")
    ewe_dc = Cpt(ClockSignal, value=0.0, units="V", kind="normal")
    i_dc = Cpt(ClockSignal, value=0.0, units="A", kind="normal")
    amplitude = Cpt(Signal, value=0.0, kind="config")

    def prepare(self, technique: GEIS | PEIS) -> Status:
        """Set the sweep the next ``trigger()`` runs."""
        if not isinstance(technique, (GEIS, PEIS)):
            raise TypeError(f"{self.name} measures GEIS or PEIS, not {type(technique).__name__}")
        self._technique = technique
        self.amplitude.put(technique.amplitude)
        return finished_status()

    @property
    def _channel(self) -> PotentiostatChannel:
        """Get the channel this meter measures on (its parent)."""
        channel = self.parent
        if not isinstance(channel, PotentiostatChannel):
            raise RuntimeError(f"{self.name}: an impedance meter measures on a PotentiostatChannel")
        return channel

    def trigger(self) -> DeviceStatus:
        status = DeviceStatus(self)
        channel = self._channel
        backend = channel.backend

        def done(reason: str, failure: Exception | None = None) -> None:
            channel.end_reason.put(reason)
            spectrum = backend.read_spectrum() if failure is None else None
            if failure is None and spectrum is None:  # the backend keeps each finished sweep for this callback
                failure = RuntimeError(f"{self.name}: the sweep ended ({reason}) without a spectrum")
            if spectrum is None:
                status.set_exception(failure)
                return
            self._store(spectrum)
            status.set_finished()

        backend.start(self._technique, on_done=done)
        return status

    def _store(self, spectrum: dict) -> None:
        store_spectrum(self, spectrum)
        stamp = spectrum["time"]
        self.ewe_dc.put(spectrum["Ewe"], timestamp=stamp)
        self.i_dc.put(spectrum["I"], timestamp=stamp)

    def stop(self, *, success: bool = False) -> None:
        self._channel.stop(success=success)


class PotentiostatChannel(Device):
    """One potentiostat channel (BioLogic SP-200) as a flyer plus an impedance meter.

    Parameters
    ----------
    backend : PotentiostatBackend
        Driver of the channel: ``devices.biologic.backend.EClibBackend`` over the vendor's library or
        the simulated one (``devices.sim.eclib.SimEClib``).
    clock : Clock
        The session clock (timestamps).
    assets_dir : Path
        Where the channel writes its HDF5 pages; the storage layer registers them.
    name : str
        The device name, which prefixes its data keys.
    """

    ewe = Cpt(ReadbackSignal, reader="_latest_ewe", units="V", kind="hinted")
    current = Cpt(ReadbackSignal, reader="_latest_current", units="A", kind="normal")
    charge = Cpt(ClockSignal, value=0.0, units="C", kind="normal")
    end_reason = Cpt(Signal, value="", kind="omitted")
    ended_at = Cpt(Signal, value=0.0, kind="omitted")  # session-clock time the last technique ended (or was stopped)
    channel = Cpt(Signal, value=1, kind="config")
    eis = Cpt(ImpedanceMeter, kind="normal")

    def __init__(self, *, backend: PotentiostatBackend, clock: Clock, assets_dir: Path, channel: int = 1, name: str, **kwargs):
        self.backend = backend
        self.clock = clock
        self.assets_dir = Path(assets_dir)
        self._technique = None
        self._writer: HDF5StreamWriter | None = None
        self._done_status: DeviceStatus | None = None
        self._rows_lock = threading.RLock()  # a wall clock's durable writes come from a timer thread
        self._durable_event = None
        self._paused = False
        self.collect_pending = False  # a technique was kicked off and its last rows are not collected yet
        super().__init__(name=name, **kwargs)
        self.channel.put(channel)

    @property
    def hints(self):
        """No hinted fields for the collected ``potentiostat`` stream: its rows are pages (StreamDatum)
        that live callbacks cannot show. Plans read ``ewe`` (hinted itself) into ``primary`` for them."""
        return {"fields": []}

    # ---- staging: one HDF5 file per run -------------------------------------------------------
    def stage(self):
        self._writer = HDF5StreamWriter(self.assets_dir, self.name, ROW_FIELDS)
        self._writer.open(self.name)
        self.charge.put(0.0)
        self._charge_written = (0.0, None)  # charge of the rows in the file, and the last row's time
        return super().stage()

    def unstage(self):
        """Close the run's HDF5 file, first stopping a technique still running (a plan cut short).

        A lost channel is left to the plan's finalizer, which tries to open its circuit and reports
        what happened: an error raised here would replace the one that ended the plan.
        """
        try:
            if self.backend.running:
                self.backend.stop()
        finally:
            self._cancel_durable()
            with self._rows_lock:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
        return super().unstage()

    def _staged_writer(self) -> HDF5StreamWriter:
        """Return the run's HDF5 writer, which exists while the channel is staged."""
        if self._writer is None:
            raise RuntimeError(f"{self.name}: stage the channel before running or collecting")
        return self._writer

    # ---- flyer ---------------------------------------------------------------------------------
    def prepare(self, technique) -> Status:
        """Set the timed technique (OCV, CP or CA) the next ``kickoff()`` starts."""
        if isinstance(technique, (GEIS, PEIS)):
            raise TypeError("impedance sweeps run on the channel's `eis` device, not as a flyer")
        self._technique = technique
        return finished_status()

    def kickoff(self) -> Status:
        if self._technique is None:
            raise RuntimeError(f"{self.name}: prepare a technique before kickoff")
        self._done_status = DeviceStatus(self)
        self.end_reason.put("")
        self._paused = False
        self.backend.start(self._technique, on_done=self._technique_done)
        self._schedule_durable()
        self.collect_pending = True
        return finished_status()

    def _technique_done(self, reason: str, failure: Exception | None = None) -> None:
        self.ended_at.put(self.clock.now())
        self.end_reason.put(reason)
        if self._done_status is None or self._done_status.done:
            return
        if failure is not None:
            self._done_status.set_exception(failure)
        else:
            self._done_status.set_finished()

    def complete(self) -> DeviceStatus:
        """Return a status that finishes when the technique ends (its time, a limit, or a stop)."""
        if self._done_status is None:
            raise RuntimeError(f"{self.name}: complete() before kickoff()")
        return self._done_status

    def describe_collect(self):
        return self._staged_writer().describe()

    def collect_asset_docs(self, index: int | None = None):
        if self._writer is None:  # unstaged: a plan's cleanup collects the last rows before unstaging
            return
        with self._rows_lock:
            self.collect_pending = self.running_technique()
            self._write_rows()
            docs = self._writer.announce()
            charge, when = self._charge_written
            if docs and when is not None:  # the charge signal moves with the pages, as before
                self.charge.put(charge, timestamp=when)
        yield from docs

    # ---- durable rows between pages --------------------------------------------------------------
    def _write_rows(self) -> None:
        """Move the rows measured so far from the backend into the file (not yet announced)."""
        rows = self.backend.read_rows()
        if len(rows["time"]):
            self._staged_writer().write(self._with_charge(rows))

    def _schedule_durable(self) -> None:
        self._cancel_durable()
        interval = SIMULATED_DURABLE_INTERVAL if isinstance(self.clock, VirtualClock) else DURABLE_INTERVAL
        self._durable_event = self.clock.call_at(self.clock.now() + interval, self._durable_tick)

    def _cancel_durable(self) -> None:
        if self._durable_event is not None:
            self._durable_event.cancel()
            self._durable_event = None

    def _durable_tick(self) -> None:
        with self._rows_lock:
            self._durable_event = None
            if self._writer is None:
                return
            self._write_rows()
            if self.backend.running:
                self._schedule_durable()

    def running_technique(self) -> bool:
        """Get whether the channel runs a timed technique (so more rows will come)."""
        return self.backend.running and self._technique is not None

    def _with_charge(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the charge passed since staging: the integral of I dt over the sampled rows."""
        step = getattr(self._technique, "sample_interval", 1.0)
        charge = self._charge_written[0] + np.cumsum(rows["I"]) * step
        self._charge_written = (float(charge[-1]), float(rows["time"][-1]))
        return {**rows, "charge": charge}

    def _latest_ewe(self) -> tuple[float, float]:
        row = self._latest_row()
        return row["Ewe"], row["time"]

    def _latest_current(self) -> tuple[float, float]:
        row = self._latest_row()
        return row["I"], row["time"]

    def _latest_row(self) -> dict[str, float]:
        """The latest sample; while paused, the cell at open circuit (its voltage now, I = 0)."""
        return self.backend.open_circuit_values() if self._paused else self.backend.latest()

    def get_index(self) -> int:
        return self._staged_writer().get_index()

    # ---- what the RunEngine calls on stop and pause --------------------------------------------
    def stop(self, *, success: bool = False) -> None:
        """Open the circuit; the rows measured so far stay in the backend until collected.

        Raises the backend's :class:`~devices.errors.InstrumentFault` if the circuit could not be opened.
        """
        self.backend.stop()

    def pause(self) -> None:
        """Pausing a cell means open circuit: a paused plating step must not keep plating.

        The rows measured until now stay in the backend for the next collect (after a resume, or
        the plan's cleanup on abort). While paused the channel reads open circuit: Ewe is the
        cell's voltage now and I = 0.
        """
        self.backend.stop()
        self._paused = True

    def resume(self) -> None:
        """Nothing to restore: the paused technique has ended ("stopped"), and the plan, which does
        not rewind, goes on from there (``rest`` for its remaining time, plating with its next segment)."""
        self._paused = False
