"""An impedance analyser (BioLogic MTZ-35) as an ophyd device: one potentiostatic spectrum per trigger.

``prepare(PEIS(...))`` checks the sweep against the instrument's limits and the lab's amplitude cap,
so a sweep the instrument cannot run is refused before anything is sent; ``trigger()`` runs it;
``read()`` gives one reading with the frequency, Z' and Z'' arrays, the same shape as the SP-200's
``potentiostat.eis``. ``stop()`` and ``pause()`` switch the generator off, keeping the points measured.
"""

from __future__ import annotations

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus, Status

from devices.backends import ImpedanceBackend
from devices.biologic.techniques import PEIS
from devices.common import ClockSignal, finished_status, store_spectrum
from labctl.core.clock import Clock


class ImpedanceAnalyser(Device):
    """The lab's impedance analyser for potentiostatic EIS.

    Parameters
    ----------
    backend : ImpedanceBackend
        The instrument's backend: ``devices.biologic.mtz35.MTZ35Backend``.
    clock : Clock
        The session clock (timestamps).
    name : str
        The device name, which prefixes its data keys.
    """

    sweep_start = Cpt(ClockSignal, value=0.0, units="s", kind="normal")
    frequency = Cpt(ClockSignal, value=np.zeros(0), units="Hz", kind="normal")
    z_real = Cpt(ClockSignal, value=np.zeros(0), units="ohm", kind="normal")
    z_imag = Cpt(ClockSignal, value=np.zeros(0), units="ohm", kind="normal")
    amplitude = Cpt(Signal, value=0.0, kind="config")
    end_reason = Cpt(Signal, value="", kind="omitted")

    def __init__(self, *, backend: ImpedanceBackend, clock: Clock, name: str, **kwargs):
        self.backend = backend
        self.clock = clock
        self._technique: PEIS | None = None
        super().__init__(name=name, **kwargs)

    def prepare(self, technique: PEIS) -> Status:
        """Set the sweep the next ``trigger()`` runs, refusing it if it is out of range."""
        self.backend.check(technique)
        self._technique = technique
        self.amplitude.put(technique.amplitude)
        return finished_status()

    def trigger(self) -> DeviceStatus:
        """Run the prepared sweep; the status finishes when the spectrum is in the signals."""
        if self._technique is None:
            raise RuntimeError(f"{self.name}: prepare a PEIS sweep before trigger")
        status = DeviceStatus(self)

        def done(reason: str) -> None:
            spectrum = self.backend.read_spectrum()
            self.end_reason.put(reason)
            if spectrum is None:  # the backend keeps each finished sweep for its end callback
                status.set_exception(RuntimeError(f"{self.name}: the sweep ended ({reason}) without a spectrum"))
                return
            self._store(spectrum)
            status.set_finished()

        self.backend.start(self._technique, on_done=done)
        return status

    def _store(self, spectrum: dict) -> None:
        store_spectrum(self, spectrum)

    def stop(self, *, success: bool = False) -> None:
        """Switch the generator off; a running sweep ends with the points measured so far."""
        self.backend.stop()

    def pause(self) -> None:
        """Pausing means no signal on the cell: the sweep ends where it is."""
        self.backend.stop()

    def resume(self) -> None:
        """Nothing to restore: the plan triggers its next sweep after resuming."""
