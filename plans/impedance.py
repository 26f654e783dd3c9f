"""Potentiostatic impedance (PEIS), single or repeated, each spectrum fitted.

PEIS runs on the lab's impedance analyser (the MTZ-35) when the lab has one, and on the SP-200
channel's own impedance meter otherwise; both give the same reading (frequency, Z', Z'' arrays).
"""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.utils import Msg

from devices.biologic.techniques import PEIS, sweep_duration
from labctl.analysis import BLOCKING, BULK_INTERFACE, fit_spectrum
from labctl.units import Count, Unit
from plans.electrochemistry import IMPEDANCE, IMPEDANCE_FIT, _safely
from plans.stubs import (ENVIRONMENT, FIT_HINTS, ComputedValues, fit_unit, open_circuit, plan_metadata,
                         record_result, wait_for)


DEVICE_ROLES = ("potentiostat", "chamber", "rig", "impedance_analyser")  # peis's device arguments


def circuit_for(cell_kind: str):
    """Return the equivalent circuit of a cell kind: blocking electrodes give a spur, not an arc."""
    return BLOCKING if cell_kind == "blocking" else BULK_INTERFACE


def lead_resistance_of(lead_resistances: dict | None, impedance_analyser) -> float | None:
    """Return the lead resistance of the instrument that measures the spectra (lab file), or None."""
    role = "impedance_analyser" if impedance_analyser is not None else "potentiostat"
    return (lead_resistances or {}).get(role)


def impedance_meter(device):
    """Return the device whose reading is a spectrum: a potentiostat channel's ``eis``, or an analyser itself."""
    return getattr(device, "eis", device)


def measure_spectrum(meter, technique):
    """Run one sweep on ``meter``, store it as one event of the impedance stream and return the reading."""
    yield from bps.prepare(meter, technique, wait=True)
    status = yield from bps.trigger(meter, group="eis")
    yield from wait_for(status, "eis", expected=sweep_duration(technique))
    yield from bps.create(name=IMPEDANCE)
    reading = yield from bps.read(meter)
    yield from bps.save()
    return reading


class FitRecorder:
    """Fits spectra (warm-started) and stores each fit as one event of ``impedance_fit``.

    Unlike :class:`plans.electrochemistry.SpectrumFitter` it watches for no short circuit and takes
    the circuit, so it serves blocking cells and conductivity measurements too. ``meter`` is the
    device whose readings are fitted: a potentiostat channel (its ``eis``) or an impedance analyser.
    """

    def __init__(self, meter, electrode_area: float, circuit, lead_resistance: float | None = None,
                 alternative=None):
        self.prefix = impedance_meter(meter).name
        self.area, self.circuit = electrode_area, circuit
        self.lead_resistance, self.alternative = lead_resistance, alternative
        self.values = ComputedValues(IMPEDANCE_FIT, source="labctl.analysis.fit_spectrum", units=fit_unit,
                                     hinted=FIT_HINTS)
        self.previous = None

    def record(self, reading, **extra: float):
        """Fit ``reading``, store the fit with ``extra`` values beside it, and return the fit.

        When the circuit leaves the bulk not determined and an ``alternative`` circuit is given (a
        cold symmetric cell's interface arc is a spur within the sweep, as a blocking cell's), that
        one is fitted too and kept if it determines the bulk.
        """
        field = lambda name: reading[f"{self.prefix}_{name}"]["value"]  # noqa: E731
        z = np.asarray(field("z_real")) + 1j * np.asarray(field("z_imag"))
        frequencies = np.asarray(field("frequency"))
        fit = fit_spectrum(frequencies, z, self.circuit, previous=self.previous, lead_resistance=self.lead_resistance)
        if self.alternative is not None and fit.why("bulk") is not None:
            other = fit_spectrum(frequencies, z, self.alternative, lead_resistance=self.lead_resistance)
            fit = other if other.why("bulk") is None else fit
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
    impedance_analyser=None,
    *,
    amplitude: Annotated[float, Unit("mV", gt=0, le=1000)] = 0.01,
    f_max: Annotated[float, Unit("Hz", gt=0, le=35e6)] = 7e6,
    f_min: Annotated[float, Unit("Hz", gt=0)] = 1.0,
    points_per_decade: Annotated[int, Count(ge=1, le=100)] = 10,
    repeats: Annotated[int, Count(ge=1, le=10_000)] = 1,
    interval: Annotated[float, Unit("min", ge=0)] = 0.0,
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    cell_kind: str = "symmetric",
    lead_resistances: dict | None = None,
    md: dict | None = None,
):
    """Measure potentiostatic impedance spectra at open circuit, once or repeatedly, fitting each.

    Runs on the impedance analyser when one is given (the runner passes the lab's MTZ-35: up to
    35 MHz), else on the potentiostat's channel (up to 7 MHz); a sweep the instrument cannot run is
    refused before it is sent. Each spectrum is one event of the ``impedance`` stream and its
    equivalent-circuit fit (bulk and interface arcs, or the blocking circuit for a blocking cell) one
    event of ``impedance_fit``. The start document names the instrument (``impedance_device``).

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel the cell is on; with an analyser it is only held at open circuit.
    chamber, rig : optional
        Read into the environment stream with every spectrum.
    impedance_analyser : ImpedanceAnalyser, optional
        The lab's impedance analyser; when given, the spectra are measured on it.
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
    lead_resistances : dict, optional
        Lead resistance (ohm) by instrument role, from the lab file; bounds the fits' R0.
    md : dict, optional
        Extra metadata for the start document.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    args = {k: v for k, v in locals().items() if k not in (*DEVICE_ROLES, "md", "lead_resistances")}
    environment = [d for d in (chamber, rig) if d is not None]
    technique = PEIS(amplitude=amplitude, f_max=f_max, f_min=f_min, points_per_decade=points_per_decade)
    meter = impedance_analyser if impedance_analyser is not None else potentiostat.eis
    recorder = FitRecorder(meter, electrode_area, circuit_for(cell_kind),
                           lead_resistance=lead_resistance_of(lead_resistances, impedance_analyser))
    outcome = {}

    def body():
        yield from bps.open_run(plan_metadata("peis", args, md, impedance_device=meter.name))
        if impedance_analyser is not None:
            yield from open_circuit(potentiostat)  # one instrument drives the cell at a time
        for index in range(repeats):
            if environment:
                yield from bps.trigger_and_read(environment, name=ENVIRONMENT)
            fit = yield from recorder.record((yield from measure_spectrum(meter, technique)))
            if index + 1 < repeats and interval > 0:
                yield from bps.sleep(interval)
        spectra = "1 spectrum" if repeats == 1 else f"{repeats} spectra"
        why = fit.why("bulk")
        outcome["reason"] = (f"{spectra}; last bulk resistance {fit.value('bulk'):.4g} +/- {fit.error('bulk'):.2g} ohm"
                             if why is None else f"{spectra}; last bulk resistance not determined ({why})")
        yield from record_result("spectra", outcome["reason"], meter.root.clock.now(),
                                 {"spectra": repeats, "r_bulk": fit.value("bulk")}, {"r_bulk": "ohm"})
        yield from bps.close_run(exit_status="success", reason=outcome["reason"])

    if impedance_analyser is None:
        yield from _safely(potentiostat, body())
    else:  # the generator off whatever happens
        yield from bpp.finalize_wrapper(body(), Msg("stop", impedance_analyser))
    return outcome.get("reason")
