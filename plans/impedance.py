"""Potentiostatic impedance (PEIS) on the SP-200 channel, single or repeated, each spectrum fitted.

The MTZ-35 impedance analyser has no driver yet (issue 3 continues), so PEIS runs on the
potentiostat's own impedance channel; a plan for the MTZ-35 would take that device instead.
"""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
import numpy as np

from devices.biologic.techniques import PEIS
from labctl.analysis import BLOCKING, BULK_INTERFACE, fit_spectrum
from labctl.units import Unit
from plans.electrochemistry import IMPEDANCE_FIT, _safely, measure_impedance
from plans.stubs import ENVIRONMENT, ComputedValues, plan_metadata


def circuit_for(cell_kind: str):
    """Return the equivalent circuit of a cell kind: blocking electrodes give a spur, not an arc."""
    return BLOCKING if cell_kind == "blocking" else BULK_INTERFACE


class FitRecorder:
    """Fits spectra (warm-started) and stores each fit as one event of ``impedance_fit``.

    Unlike :class:`plans.electrochemistry.SpectrumFitter` it watches for no short circuit and takes
    the circuit, so it serves blocking cells and conductivity measurements too.
    """

    def __init__(self, potentiostat, electrode_area: float, circuit):
        self.prefix = potentiostat.eis.name
        self.area, self.circuit = electrode_area, circuit
        self.values = ComputedValues(IMPEDANCE_FIT, source="labctl.analysis.fit_spectrum")
        self.previous = None

    def record(self, reading, **extra: float):
        """Fit ``reading``, store the fit with ``extra`` values beside it, and return the fit."""
        field = lambda name: reading[f"{self.prefix}_{name}"]["value"]  # noqa: E731
        z = np.asarray(field("z_real")) + 1j * np.asarray(field("z_imag"))
        fit = fit_spectrum(np.asarray(field("frequency")), z, self.circuit, previous=self.previous)
        self.previous = fit
        self.values.update({**fit.summary(area=self.area), **extra}, field("sweep_start"))
        yield from bps.create(name=IMPEDANCE_FIT)
        yield from bps.read(self.values)
        yield from bps.save()
        return fit


def peis(
    potentiostat,
    chamber=None,
    rig=None,
    *,
    amplitude: Annotated[float, Unit("mV", gt=0, le=1000)] = 0.01,
    f_max: Annotated[float, Unit("Hz", gt=0, le=7e6)] = 7e6,
    f_min: Annotated[float, Unit("Hz", gt=0)] = 1.0,
    points_per_decade: int = 10,
    repeats: int = 1,
    interval: Annotated[float, Unit("min", ge=0)] = 0.0,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    cell_kind: str = "symmetric",
    md: dict | None = None,
):
    """Measure potentiostatic impedance spectra at open circuit, once or repeatedly, fitting each.

    Runs on the SP-200 channel; the MTZ-35 analyser is not supported yet. Each spectrum is one
    event of the ``impedance`` stream and its equivalent-circuit fit (bulk and interface arcs, or
    the blocking circuit for a blocking cell) one event of ``impedance_fit``.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on.
    chamber, rig : optional
        Read into the environment stream with every spectrum.
    amplitude : float
        Sine amplitude, V (YAML: e.g. ``10 mV``).
    f_max, f_min : float
        Sweep limits, Hz.
    points_per_decade : int
        Frequencies per decade.
    repeats : int
        Number of spectra.
    interval : float
        Open-circuit wait between one spectrum and the next, s (0: back to back).
    electrode_area : float
        Electrode area, m^2; filled in from the cell metadata when run from YAML.
    cell_kind : str
        The cell's kind, which picks the circuit; filled in from the cell metadata.
    md : dict, optional
        Extra metadata for the start document.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    args = {k: v for k, v in locals().items() if k not in ("potentiostat", "chamber", "rig", "md")}
    environment = [d for d in (chamber, rig) if d is not None]
    technique = PEIS(amplitude=amplitude, f_max=f_max, f_min=f_min, points_per_decade=points_per_decade)
    recorder = FitRecorder(potentiostat, electrode_area, circuit_for(cell_kind))
    outcome = {}

    def body():
        yield from bps.open_run(plan_metadata("peis", args, md))
        for index in range(repeats):
            if environment:
                yield from bps.trigger_and_read(environment, name=ENVIRONMENT)
            fit = yield from recorder.record((yield from measure_impedance(potentiostat, technique)))
            if index + 1 < repeats and interval > 0:
                yield from bps.sleep(interval)
        role = "bulk" if "bulk" in recorder.circuit.roles else next(iter(recorder.circuit.roles))
        spectra = "1 spectrum" if repeats == 1 else f"{repeats} spectra"
        outcome["reason"] = f"{spectra}; last {role} resistance {fit.value(role):.4g} ohm"
        yield from bps.close_run(exit_status="success", reason=outcome["reason"])

    yield from _safely(potentiostat, body())
    return outcome.get("reason")
