"""Plan stubs for impedance spectra: measuring one, and fitting each as it arrives into ``impedance_fit``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator

from devices.biologic.techniques import sweep_duration
from plans.stubs import ENVIRONMENT, FIT_HINTS, ComputedValues, fit_unit, wait_for

if TYPE_CHECKING:  # labctl.core.analysis (scipy) is imported where a spectrum is fitted: `labctl check` needs none
    from labctl.core.analysis import Circuit, FitResult, ShortDetector

IMPEDANCE = "impedance"
IMPEDANCE_FIT = "impedance_fit"
#: The parameters of the cell behind a short (its bulk and interface arcs), held at their last
#: values before the short when the shorted-cell circuit is fitted.
CELL_BEHIND_SHORT = ("R1", "Q1", "a1", "R2", "Q2", "a2")
#: The conditions of a sweep stored beside its fit: the chamber temperature and stack pressure read
#: during it (mean, min, max) and the sweep's window on the session clock. NaN: not measured.
CONDITION_UNITS = {**{f"temperature_{s}": "K" for s in ("mean", "min", "max")},
                   **{f"pressure_{s}": "Pa" for s in ("mean", "min", "max")},
                   "sweep_window_start": "s", "sweep_window_end": "s"}
#: Readings of the surroundings during a sweep: at its start and end, and one per this many seconds
#: in between (at most :data:`MAX_READINGS_WITHIN`), so a long sweep sees a drift.
CONDITIONS_SPACING = 30.0
MAX_READINGS_WITHIN = 4


def circuit_for(cell_kind: str) -> Circuit:
    """Return the equivalent circuit of a cell kind: blocking electrodes give a spur, not an arc."""
    from labctl.core.analysis import BLOCKING, BULK_INTERFACE

    return BLOCKING if cell_kind == "blocking" else BULK_INTERFACE


def lead_resistance_of(lead_resistances: dict | None, impedance_analyser=None) -> float | None:
    """Return the lead resistance of the instrument that measures the spectra (lab file), or None."""
    role = "impedance_analyser" if impedance_analyser is not None else "potentiostat"
    return (lead_resistances or {}).get(role)


def impedance_meter(device) -> Any:
    """Return the device whose reading is a spectrum: a potentiostat channel's ``eis``, or an analyser itself."""
    return getattr(device, "eis", device)


def measure_spectrum(meter, technique, chamber=None, rig=None) -> MsgGenerator[dict]:
    """Run one sweep on ``meter``, store it as one event of the impedance stream and return the reading.

    The ``chamber`` and ``rig`` (when given) are read into the environment stream at the sweep's start
    and end and every :data:`CONDITIONS_SPACING` s in between: the plan sleeps through the sweep in
    parts and reads them between the parts, so the sweep itself is not delayed. The returned reading
    holds, beside the meter's fields, the sweep's conditions as ``conditions_<key>`` fields (keys of
    :data:`CONDITION_UNITS`; NaN where a device is missing), which :meth:`FitRecorder.record` stores.
    """
    surroundings = [d for d in (chamber, rig) if d is not None]
    clock = _root(meter).clock
    yield from bps.prepare(meter, technique, wait=True)
    status = yield from bps.trigger(meter, group="eis")
    start = clock.now()
    readings = [(yield from _read_surroundings(surroundings))]
    expected = sweep_duration(technique)
    within = min(MAX_READINGS_WITHIN, math.floor(expected / CONDITIONS_SPACING)) if surroundings else 0
    for _ in range(within):
        yield from bps.sleep(expected / (within + 1))
        readings.append((yield from _read_surroundings(surroundings)))
    # The rest of the expected time from the start, not one more part: rounding must not leave the
    # sweep a hair short of done, which would cost a whole poll.
    yield from wait_for(status, "eis", expected=max(0.0, start + expected - clock.now()))
    end = clock.now()
    readings.append((yield from _read_surroundings(surroundings)))
    yield from bps.create(name=IMPEDANCE)
    reading = yield from bps.read(meter)
    yield from bps.save()
    values = {**_statistics("temperature", chamber, readings), **_statistics("pressure", rig, readings),
              "sweep_window_start": start, "sweep_window_end": end}
    return {**reading, **{f"conditions_{k}": {"value": v, "timestamp": start} for k, v in values.items()}}


def _root(device):
    """The device ``device`` is part of (ophyd's ``root``, walked by ``parent`` for plain readables)."""
    while getattr(device, "parent", None) is not None:
        device = device.parent
    return device


def _read_surroundings(devices: list) -> MsgGenerator[dict]:
    return (yield from bps.trigger_and_read(devices, name=ENVIRONMENT)) if devices else {}


def _statistics(quantity: str, device, readings: list[dict]) -> dict[str, float]:
    """Mean, min and max of ``device``'s ``quantity`` (its signal of that name) over ``readings``."""
    values = [] if device is None else [r[getattr(device, quantity).name]["value"] for r in readings]
    if not values:
        return dict.fromkeys((f"{quantity}_mean", f"{quantity}_min", f"{quantity}_max"), math.nan)
    return {f"{quantity}_mean": float(np.mean(values)), f"{quantity}_min": float(np.min(values)),
            f"{quantity}_max": float(np.max(values))}


class FitRecorder:
    """Fits spectra (warm-started) and stores each fit as one event of ``impedance_fit``.

    ``meter`` is the device whose readings are fitted: a potentiostat channel (its ``eis``) or an
    impedance analyser. ``lead_resistance`` (ohm, the lab file's) bounds every fit's R0.
    """

    def __init__(self, meter, electrode_area: float, circuit: Circuit | None = None,
                 lead_resistance: float | None = None, alternative: Circuit | None = None) -> None:
        from labctl.core.analysis import BULK_INTERFACE

        self.prefix = impedance_meter(meter).name
        self.area, self.circuit = electrode_area, BULK_INTERFACE if circuit is None else circuit
        self.lead_resistance, self.alternative = lead_resistance, alternative
        self.values = ComputedValues(IMPEDANCE_FIT, source="labctl.core.analysis.fit_spectrum", units=_fit_unit,
                                     hinted=FIT_HINTS)
        self.previous: FitResult | None = None
        self.before_short: FitResult | None = None  # the last fit of the cell's own circuit

    def field(self, reading: dict, name: str) -> Any:
        """One field of a reading of the meter (``frequency``, ``z_real``, ``sweep_start``, ...)."""
        return reading[f"{self.prefix}_{name}"]["value"]

    def record(self, reading: dict, *, shorted: bool = False, **extra: float) -> MsgGenerator[FitResult]:
        """Fit ``reading``, store the fit with its sweep's conditions and ``extra`` beside it; return the fit.

        The conditions are the ``conditions_<key>`` fields :func:`measure_spectrum` returns (NaN for
        a reading without them), so every event of ``impedance_fit`` has the same keys.

        When the circuit leaves the bulk not determined and an ``alternative`` circuit is given (a
        cold symmetric cell's interface arc is a spur within the sweep, as a blocking cell's), that
        one is fitted too and kept if it determines the bulk. A ``shorted`` cell is fitted with the
        shorted-cell circuit, the cell behind the short held at its last fit before it
        (:data:`CELL_BEHIND_SHORT`), so the fit's ``short`` is the short's resistance.
        """
        frequencies = np.asarray(self.field(reading, "frequency"))
        z = np.asarray(self.field(reading, "z_real")) + 1j * np.asarray(self.field(reading, "z_imag"))
        fit = self._shorted(frequencies, z) if shorted else self._fit(frequencies, z)
        self.previous = fit
        conditions = {k: reading.get(f"conditions_{k}", {"value": math.nan})["value"] for k in CONDITION_UNITS}
        self.values.update({**fit.summary(area=self.area), **conditions, **extra}, self.field(reading, "sweep_start"))
        yield from bps.create(name=IMPEDANCE_FIT)
        yield from bps.read(self.values)
        yield from bps.save()
        return fit

    def _fit(self, frequencies: np.ndarray, z: np.ndarray) -> FitResult:
        from labctl.core.analysis import fit_spectrum

        fit = fit_spectrum(frequencies, z, self.circuit, previous=self.previous, lead_resistance=self.lead_resistance)
        if self.alternative is not None and fit.why("bulk") is not None:
            other = fit_spectrum(frequencies, z, self.alternative, lead_resistance=self.lead_resistance)
            fit = other if other.why("bulk") is None else fit
        self.before_short = fit
        return fit

    def _shorted(self, frequencies: np.ndarray, z: np.ndarray) -> FitResult:
        from labctl.core.analysis import BULK_INTERFACE, SHORTED, fit_spectrum

        before = self.before_short
        behind = ({name: before.estimate(name) for name in CELL_BEHIND_SHORT}
                  if before is not None and before.circuit is BULK_INTERFACE else None)
        return fit_spectrum(frequencies, z, SHORTED, previous=self.previous, fixed=behind,
                            lead_resistance=self.lead_resistance)


def _fit_unit(key: str) -> str | None:
    return CONDITION_UNITS[key] if key in CONDITION_UNITS else fit_unit(key)


class ShortWatch:
    """Fits each spectrum of a plating run and shows it to the short-circuit detector.

    The low-frequency resistance goes to the impedance rule (:meth:`ShortDetector.add_spectrum`)
    and beside the fit (``r_low_frequency``); once the cell has shorted, by either rule, its
    spectra are fitted with the shorted-cell circuit.
    """

    def __init__(self, recorder: FitRecorder, detector: ShortDetector) -> None:
        self.recorder, self.detector = recorder, detector
        self.last_ewe_dc: float | None = None  # DC voltage during the last sweep, V

    def record(self, reading: dict, shorted: bool = False) -> MsgGenerator[str | None]:
        """Fit and store ``reading``; return the impedance rule's short reason, or None."""
        frequencies = np.asarray(self.recorder.field(reading, "frequency"))
        r_low = float(np.asarray(self.recorder.field(reading, "z_real"))[np.argmin(frequencies)])
        short = self.detector.add_spectrum(self.recorder.field(reading, "sweep_start"), r_low)
        yield from self.recorder.record(reading, shorted=shorted or bool(short), r_low_frequency=r_low)
        self.last_ewe_dc = self.recorder.field(reading, "ewe_dc")
        return short
