"""Decoding ``BL_GetData`` buffers into arrays, and draining a channel without losing a buffer.

A buffer holds ``NbRows`` records of ``NbCols`` uint32 words; ``TDataInfos`` says which technique
and which of its processes wrote them, and so the layout. The layouts follow the guide's data
format tables (section 7) as the public wrappers read them (easy-biologic, PyExpLabSys, BioLogic's
kbio examples): time as a 64-bit tick count in two words (high, low) times the channel's time base,
plus the technique's start time; floats as their IEEE-754 single bits on VMP3 and VMP-300 boards,
which is what ``BL_ConvertNumericIntoSingle`` computes; integers (cycle) as they are. Impedance
techniques write process 0 (time, Ewe, I while the DC level is held) and process 1 (one record per
frequency: f, |Ewe|, |I|, phase of Zwe in degrees, ..., t in s from the technique start); VMP3
boards add the current range as a fifteenth word.

Decoding is vectorised: one ``numpy`` view of the buffer, one expression per column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devices.biologic import eclib
from labctl.core.errors import LabctlError

VMP3, VMP300 = "VMP3", "VMP-300"
# VMP-300 "P" boards are left out: their float words are not IEEE singles (guide 6.8 sends them
# through BL_ConvertChannelNumericIntoSingle) and no public source documents their encoding.
FAMILIES = {eclib.BOARD_ESSENTIAL: VMP3, eclib.BOARD_PREMIUM: VMP300}

TIME, SINGLE, INT, SKIP = "time", "single", "int", "skip"  # a TIME field takes two words

_DC = (("time", TIME), ("Ewe", SINGLE), ("I", SINGLE), ("cycle", INT))
_EIS_DC = (("time", TIME), ("Ewe", SINGLE), ("I", SINGLE))
_EIS_SWEEP = (("frequency", SINGLE), ("abs_Ewe", SINGLE), ("abs_I", SINGLE), ("phase_Zwe", SINGLE),
              ("Ewe", SINGLE), ("I", SINGLE), ("blank0", SKIP), ("abs_Ece", SINGLE), ("abs_Ice", SINGLE),
              ("phase_Zce", SINGLE), ("Ece", SINGLE), ("blank1", SKIP), ("blank2", SKIP), ("t", SINGLE))

# (family, technique id, process index) -> fields in word order.
LAYOUTS: dict[tuple[str, int, int], tuple[tuple[str, str], ...]] = {}
for _family in (VMP3, VMP300):
    for _tid in (101, 102, 155, 157):  # CA, CP, CPLIMIT, CALIMIT
        LAYOUTS[_family, _tid, 0] = _DC
    for _tid in (104, 107):  # PEIS, GEIS
        LAYOUTS[_family, _tid, 0] = _EIS_DC
LAYOUTS[VMP300, 100, 0] = (("time", TIME), ("Ewe", SINGLE))
LAYOUTS[VMP3, 100, 0] = (("time", TIME), ("Ewe", SINGLE), ("Ece", SINGLE))
for _tid in (104, 107):
    LAYOUTS[VMP300, _tid, 1] = _EIS_SWEEP
    LAYOUTS[VMP3, _tid, 1] = _EIS_SWEEP + (("I_range", INT),)


class DataLayoutError(LabctlError, ValueError):
    """A buffer whose technique, process or width this decoder does not know; the message says which."""


def width(fields) -> int:
    """Return the number of words a record of ``fields`` takes."""
    return sum(2 if kind == TIME else 1 for _, kind in fields)


@dataclass
class Frame:
    """One decoded buffer: arrays by field name, and where they came from."""

    technique_id: int
    technique_index: int
    process: int
    loop: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def decode_words(words: np.ndarray, fields, timebase: float, start: float) -> dict[str, np.ndarray]:
    """Decode a ``(rows, cols)`` uint32 array laid out as ``fields``; time in s from the channel start."""
    columns, col = {}, 0
    for name, kind in fields:
        if kind == TIME:
            ticks = (words[:, col].astype(np.uint64) << np.uint64(32)) | words[:, col + 1]
            columns[name] = start + float(timebase) * ticks.astype(np.float64)
            col += 2
            continue
        if kind == SINGLE:
            columns[name] = words[:, col].view(np.float32).astype(np.float64)
        elif kind == INT:
            columns[name] = words[:, col].astype(np.int64)
        col += 1
    return columns


def decode(buffer, info: eclib.DataInfo, timebase: float, family: str) -> Frame:
    """Decode one ``BL_GetData`` buffer of a channel of board ``family``."""
    key = (family, info.TechniqueID, info.ProcessIndex)
    if key not in LAYOUTS:
        raise DataLayoutError(f"no data layout for technique {info.TechniqueID}, process {info.ProcessIndex} "
                              f"on a {family} board")
    fields = LAYOUTS[key]
    if info.NbCols != width(fields):
        raise DataLayoutError(f"technique {info.TechniqueID} process {info.ProcessIndex} on a {family} board "
                              f"has {width(fields)} words a record, the buffer {info.NbCols}")
    words = np.frombuffer(buffer, dtype=np.uint32, count=info.NbRows * info.NbCols).reshape(info.NbRows, info.NbCols)
    start = 0.0 if np.isnan(info.StartTime) else info.StartTime
    return Frame(info.TechniqueID, info.TechniqueIndex, info.ProcessIndex, info.loop,
                 decode_words(words, fields, timebase, start))


def impedance(frame: Frame) -> np.ndarray:
    """Return Z = |Ewe| / |I| at the phase of Zwe (degrees) of a process-1 frame."""
    c = frame.columns
    return c["abs_Ewe"] / c["abs_I"] * np.exp(1j * np.deg2rad(c["phase_Zwe"]))


class DataReader:
    """Reads a channel's data buffers through the binding, reusing one buffer and two structures.

    Parameters
    ----------
    lib : eclib.EClib
        The binding.
    device_id, channel : int
        The instrument (``BL_Connect``) and the 0-based channel.
    board_type : int
        ``BL_GetChannelBoardType``: decides the layouts (VMP3 or VMP-300 boards).
    """

    def __init__(self, lib: eclib.EClib, device_id: int, channel: int, board_type: int):
        if board_type not in FAMILIES:
            raise DataLayoutError(f"board type {board_type} is not supported: only VMP3 (1) and VMP-300 (2) "
                                  "boards, whose data words are IEEE singles")
        self.lib, self.device_id, self.channel, self.board_type = lib, device_id, channel, board_type
        self.family = FAMILIES[board_type]
        self.buffer, self.info, self.values = eclib.DataBuffer(), eclib.DataInfo(), eclib.CurrentValues()

    def read(self) -> Frame | None:
        """Fetch and decode the next buffer; None when the channel's memory is empty."""
        self.lib.get_data(self.device_id, self.channel, self.buffer, self.info, self.values)
        if self.info.NbRows == 0:
            return None
        return decode(self.buffer, self.info, self.values.TimeBase, self.family)

    def drain(self) -> tuple[list[Frame], bool]:
        """Read every buffer the channel holds; return them and whether the channel has stopped.

        The state comes with the call that found the memory empty, so "stopped" means the
        technique has ended and every record it wrote is in the returned frames.
        """
        frames = []
        while (frame := self.read()) is not None:
            frames.append(frame)
        return frames, self.values.State == eclib.STATE_STOP
