"""The simulated channel's memory: records encoded in the words ``BL_GetData`` hands over.

Rows wait in the channel's memory until ``BL_GetData`` takes them, at most 1000 words a buffer, one
technique and process per buffer. Time is a 64-bit tick count of the technique's time base in two
words, floats are IEEE-754 singles, a cycle number is a plain word. The layouts are those
``devices.biologic.data`` decodes: (time high, time low, Ewe, I or, on a VMP3 board's OCV, Ece,
cycle) for timed techniques, fourteen singles a frequency for an impedance sweep's process 1 (the
VMP3 adding the current range as a fifteenth word).
"""

from __future__ import annotations

import ctypes
import struct
from collections import deque
from dataclasses import dataclass

import numpy as np

from devices.biologic import eclib

BUFFER_WORDS = eclib.BUFFER_WORDS


def bits_to_float(word: int) -> float:
    """Return the single whose IEEE-754 bits are ``word`` (signed or unsigned 32-bit)."""
    return struct.unpack("<f", struct.pack("<I", word & 0xFFFFFFFF))[0]


def float_to_int32(value: float) -> int:
    """Return the IEEE-754 single bits of ``value`` as a signed int32, as ``TEccParam.ParamVal`` holds them."""
    return struct.unpack("<i", struct.pack("<f", value))[0]


def singles(values) -> np.ndarray:
    """Return the uint32 words of ``values`` as singles."""
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def dc_records(board_type: int, stem: str, elapsed: np.ndarray, timebase: float, ewe: np.ndarray,
               current: np.ndarray, cycle: int | None) -> np.ndarray:
    """Return the (rows, cols) words of timed samples; ``elapsed`` is s since the technique's start.

    OCV records no current (a VMP3 board records Ece instead: the simulated CE is the reference);
    ``cycle`` is recorded unless None.
    """
    ticks = np.rint(elapsed / timebase).astype(np.uint64)
    columns = [(ticks >> np.uint64(32)).astype(np.uint32), (ticks & np.uint64(0xFFFFFFFF)).astype(np.uint32),
               singles(ewe)]
    if stem == "ocv" and board_type == eclib.BOARD_ESSENTIAL:
        columns.append(singles(np.zeros(len(elapsed))))
    elif stem != "ocv":
        columns.append(singles(current))
    if cycle is not None:
        columns.append(np.full(len(elapsed), cycle, dtype=np.uint32))
    return np.column_stack(columns)


def sweep_records(board_type: int, frequency: np.ndarray, z: np.ndarray, abs_current: np.ndarray, ewe: float,
                  current: float, elapsed: np.ndarray, i_range: int) -> np.ndarray:
    """Return the (rows, cols) words of finished frequencies: f, |Ewe|, |I|, phase, DC Ewe and I, time."""
    zero = np.zeros(len(z))
    columns = [frequency, np.abs(z) * abs_current, abs_current, np.degrees(np.angle(z)),
               np.full(len(z), ewe), np.full(len(z), current), zero, zero, zero, zero, zero, zero, zero, elapsed]
    words = singles(np.column_stack(columns))
    if board_type == eclib.BOARD_ESSENTIAL:
        words = np.column_stack([words, np.full(len(z), i_range, dtype=np.uint32)])
    return words


@dataclass
class Chunk:
    """Records of one technique and process waiting in the channel's memory."""

    technique_index: int
    technique_id: int
    process: int
    loop: int
    start: float  # s from the channel's start
    timebase: float
    words: np.ndarray  # (rows, cols) uint32


class Memory:
    """The channel's memory: chunks of records, oldest first, handed over a buffer at a time."""

    def __init__(self) -> None:
        self.chunks: deque[Chunk] = deque()

    def write(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    @property
    def nbytes(self) -> int:
        """Get the bytes waiting, as ``MemFilled`` reports them."""
        return sum(chunk.words.nbytes for chunk in self.chunks)

    def read(self, buffer) -> tuple[Chunk, int, int] | None:
        """Copy the oldest records (whole rows, at most a buffer) into ``buffer``; return their chunk, rows, cols."""
        if not self.chunks:
            return None
        chunk = self.chunks[0]
        cols = chunk.words.shape[1]
        rows = min(len(chunk.words), BUFFER_WORDS // cols)
        taken, chunk.words = chunk.words[:rows], chunk.words[rows:]
        if len(chunk.words) == 0:
            self.chunks.popleft()
        ctypes.memmove(buffer, taken.ctypes.data, taken.nbytes)
        return chunk, rows, cols
