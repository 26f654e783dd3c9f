"""The techniques the simulated library knows: ids, time bases and parameter tables (guide, section 7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.biologic import eclib

S, B, I = eclib.PARAM_SINGLE, eclib.PARAM_BOOLEAN, eclib.PARAM_INT32

# Parameters every technique takes besides its own.
HARDWARE = {"I_Range": (I, 1), "E_Range": (I, 1), "Bandwidth": (I, 1)}
_LIMITS = {f"Test{n}_{part}": (kind, 20) for n in (1, 2, 3) for part, kind in (("Config", I), ("Value", S))}
_EIS = {"vs_initial": (B, 1), "vs_final": (B, 1), "Duration_step": (S, 1), "Step_number": (I, 1),
        "Record_every_dT": (S, 1), "Final_frequency": (S, 1), "Initial_frequency": (S, 1), "sweep": (B, 1),
        "Frequency_number": (I, 1), "Average_N_times": (I, 1), "Correction": (B, 1), "Wait_for_steady": (S, 1)}

# Technique stem -> (technique id, time base in s, parameter label -> (type, array length)).
TECHNIQUES: dict[str, tuple[int, float, dict[str, tuple[int, int]]]] = {
    "ocv": (100, 20e-6, {"Rest_time_T": (S, 1), "Record_every_dE": (S, 1), "Record_every_dT": (S, 1)}),
    "cp": (102, 21e-6, {"Current_step": (S, 100), "vs_initial": (B, 100), "Duration_step": (S, 100),
                        "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dE": (S, 1),
                        "N_Cycles": (I, 1)}),
    "ca": (101, 21e-6, {"Voltage_step": (S, 100), "vs_initial": (B, 100), "Duration_step": (S, 100),
                        "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dI": (S, 1),
                        "N_Cycles": (I, 1)}),
    "cplimit": (155, 34e-6, {"Current_step": (S, 20), "vs_initial": (B, 20), "Duration_step": (S, 20),
                             "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dE": (S, 1),
                             "N_Cycles": (I, 1), "Exit_Cond": (I, 20), **_LIMITS}),
    "calimit": (157, 34e-6, {"Voltage_step": (S, 20), "vs_initial": (B, 20), "Duration_step": (S, 20),
                             "Step_number": (I, 1), "Record_every_dT": (S, 1), "Record_every_dI": (S, 1),
                             "N_Cycles": (I, 1), "Exit_Cond": (I, 20), **_LIMITS}),
    "geis": (107, 24e-6, {**_EIS, "Initial_Current_step": (S, 1), "Final_Current_step": (S, 1),
                          "Record_every_dE": (S, 1), "Amplitude_Current": (S, 1)}),
    "peis": (104, 24e-6, {**_EIS, "Initial_Voltage_step": (S, 1), "Final_Voltage_step": (S, 1),
                          "Record_every_dI": (S, 1), "Amplitude_Voltage": (S, 1)}),
    "loop": (150, 20e-6, {"loop_N_times": (I, 1), "protocol_number": (I, 1)}),
}
SWEEPS = ("geis", "peis")
LIMITED = ("cplimit", "calimit")

Value = float | int | bool


@dataclass
class Loaded:
    """A technique loaded on the channel: its stem and parameter values by label and index."""

    stem: str
    values: dict[str, dict[int, Value]] = field(default_factory=dict)

    @property
    def technique_id(self) -> int:
        return TECHNIQUES[self.stem][0]

    @property
    def timebase(self) -> float:
        return float(np.float32(TECHNIQUES[self.stem][1]))  # reported as a single

    def get(self, label: str, index: int = 0, default: Value = 0) -> Any:
        # Any: the label's type is the table's (a single, an int or a bool), which the caller knows.
        return self.values.get(label, {}).get(index, default)
