"""Which circuit a stored impedance fit is of, and its values: no plotting, so the dashboard reads fits
without importing matplotlib (``labctl.plots``, ``labctl.report`` and ``labctl.liveplot`` use it too)."""

from __future__ import annotations

import numpy as np

from labctl.core.analysis import BLOCKING, BULK_INTERFACE, CIRCUITS, SHORTED

IMPEDANCE_FIT = "impedance_fit"
FIT_PREFIX = IMPEDANCE_FIT + "_"


def row_circuit(fits, i: int):
    """Return the circuit of one stored fit: its ``circuit`` index when stored, else told by the keys."""
    if FIT_PREFIX + "circuit" in fits and np.isfinite(fit_values(fits, "circuit")[i]):
        return CIRCUITS[int(fit_values(fits, "circuit")[i])]
    return fitted_circuit(fits)


def fit_values(fits, name: str) -> np.ndarray:
    """Return one fitted quantity (``"asr_bulk"``, ``"R1"``) of an ``impedance_fit`` Dataset."""
    return np.asarray(fits[FIT_PREFIX + name], dtype=float)


def fitted_circuit(fits):
    """Return the circuit stored fits are of, told apart by the parameters they hold, or None."""
    return circuit_of(fits.data_vars)


def circuit_of(keys):
    """Return the circuit whose parameters ``keys`` (``impedance_fit_R0``...) hold, or None.

    Parameters
    ----------
    keys : iterable of str
        Data keys of the ``impedance_fit`` stream: a Dataset's ``data_vars``, an event's ``data``.
    """
    names = {key.removeprefix(FIT_PREFIX) for key in keys}
    if "circuit" in names:  # every circuit's keys are stored; the circuit index says which
        index = np.asarray(keys[FIT_PREFIX + "circuit"], dtype=float)
        if index.ndim == 0 and np.isfinite(index):  # one event's data
            return CIRCUITS[int(index)]
        return BULK_INTERFACE  # a stream: each row's own is row_circuit's
    for circuit in (BULK_INTERFACE, BLOCKING, SHORTED):  # the richest circuit first
        if set(circuit.parameters) <= names:
            return circuit
    return None
