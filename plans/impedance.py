"""Potentiostatic impedance (PEIS), single or repeated, each spectrum fitted.

PEIS runs on the lab's impedance analyser (the MTZ-35) when the lab has one, and on the SP-200
channel's own impedance meter otherwise; both give the same reading (frequency, Z', Z'' arrays).
"""

from __future__ import annotations

from typing import Annotated

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

from devices.biologic.analyser import ImpedanceAnalyser
from devices.biologic.channel import PotentiostatChannel
from devices.biologic.techniques import PEIS
from devices.chamber.device import TemperatureChamber
from devices.rig.device import StackPressureRig
from labctl.core.units import Count, Unit
from plans.run import Outcome, run_plan
from plans.spectra import FitRecorder, circuit_for, impedance_meter, lead_resistance_of, measure_spectrum
from plans.stubs import open_circuit


def impedance_device(*, potentiostat: PotentiostatChannel, impedance_analyser: ImpedanceAnalyser | None,
                     **_) -> dict:
    """Start-document metadata of a plan that measures on the analyser if there is one: ``impedance_device``."""
    return {"impedance_device": impedance_meter(potentiostat if impedance_analyser is None else impedance_analyser).name}


def _repeats_check(*, repeats: int, **_) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")


@run_plan(check=_repeats_check, metadata=impedance_device)
def peis(
    potentiostat: PotentiostatChannel,
    chamber: TemperatureChamber | None = None,
    rig: StackPressureRig | None = None,
    impedance_analyser: ImpedanceAnalyser | None = None,
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
) -> MsgGenerator[Outcome]:
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
        Read into the environment stream during every sweep; their temperature and pressure over
        the sweep are stored beside its fit (NaN without them).
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
    technique = PEIS(amplitude=amplitude, f_max=f_max, f_min=f_min, points_per_decade=points_per_decade)
    meter = impedance_meter(potentiostat if impedance_analyser is None else impedance_analyser)
    recorder = FitRecorder(meter, electrode_area, circuit_for(cell_kind),
                           lead_resistance=lead_resistance_of(lead_resistances, impedance_analyser))
    if impedance_analyser is not None:
        yield from open_circuit(potentiostat)  # one instrument drives the cell at a time
    for index in range(repeats):
        fit = yield from recorder.record((yield from measure_spectrum(meter, technique, chamber, rig)))
        if index + 1 < repeats and interval > 0:
            yield from bps.sleep(interval)
    spectra = "1 spectrum" if repeats == 1 else f"{repeats} spectra"
    why = fit.why("bulk")
    reason = (f"{spectra}; last bulk resistance {fit.value('bulk'):.4g} +/- {fit.error('bulk'):.2g} ohm"
              if why is None else f"{spectra}; last bulk resistance not determined ({why})")
    return Outcome("spectra", reason, meter.root.clock.now(), {"spectra": repeats, "r_bulk": fit.value("bulk")},
                   {"r_bulk": "ohm"})
