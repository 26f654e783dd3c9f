"""A simulated EC-Lab library: the ``BL_*`` functions of ``EClib64.dll`` over a :class:`SimCell`.

It stands in for the vendor's DLL under :class:`devices.biologic.eclib.EClib`, taking the same
ctypes arguments (structures by value and by pointer, C strings as bytes) and answering with the
same return codes and binary buffers, so the binding, the encoder and the parser run unchanged in
every test. It simulates one SP-200 with the cell on one channel: a VMP-300 board taking ``*4.ecc``
files by default, or a VMP3 board taking the suffixless ones.

What it checks, as the real library does: connection and firmware before use, the ``.ecc`` file
against the board, every parameter label, type and index against the technique's table in the
guide (section 7), techniques loaded (first ... last) before a start, and a running channel before
loading, starting or updating. Where the guide names no code for a refusal the nearest one is
used: ``ERR_GEN_INVALIDPARAMETERS`` (-4) for a bad parameter, ``ERR_GEN_FUNCTIONFAILED`` (-6) for a
start with nothing loaded.

What it records, as the instrument does: rows on the ``Record_every_dT`` grid, in the channel's
memory until ``BL_GetData`` takes them, at most 1000 words a buffer, one technique and process per
buffer. Time is a 64-bit tick count of the technique's time base in two words, ``StartTime`` is
the technique's start in seconds from the channel's start, floats are IEEE-754 singles. Impedance
sweeps write their DC Ewe and I as process 0 every ``Record_every_dT`` for the whole sweep and
one process-1 record per frequency when that frequency is done; the spectrum is the cell's at the
sweep's start. ``TCurrentValues.TimeBase`` returned with a buffer is the time base of the
technique that wrote it; the time bases of OCV, CP and CALIMIT are the guide's, those of CPLIMIT
(taken as CALIMIT's) and of the impedance techniques are assumptions. A limit test that trips ends
the step at, and records, the sample that met it. The physics runs lazily, up to the clock's present, whenever the library
is called: there are no callbacks, as with the real instrument.

Fault switches, for the reliability tests: set ``fault`` to one of ``FAULTS`` (None for none) and
every call that talks to the instrument fails with the library's code for it: ``no_reply`` with
``ERR_COMM_COMMFAILED`` (-200; ``BL_Connect`` with ``ERR_COMM_CONNECTIONFAILED``, -201), as when the
network or USB link is gone; ``garbled`` with ``ERR_INSTR_RESPERROR`` (-104), a reply that did not
make sense; ``exception`` with ``ERR_INSTR_VMEERROR`` (-101), the instrument failing inside
(``BL_Connect`` still succeeds: the instrument answers). ``disconnect()`` drops the library's
session: calls fail with ``ERR_GEN_NOTCONNECTED`` (-1) until ``BL_Connect`` again. Calls the library
answers by itself (messages, parameter definitions, conversions) never fail. A failed call has no
effect on the instrument (the request did not reach it), and the instrument runs on regardless: a
technique keeps running and recording into the channel's memory while the link is down.
"""

from __future__ import annotations

import ctypes
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from devices.biologic import eclib
from devices.sim.cell import SimCell
from labctl.clock import Clock

S, B, I = eclib.PARAM_SINGLE, eclib.PARAM_BOOLEAN, eclib.PARAM_INT32

_HARDWARE = {"I_Range": (I, 1), "E_Range": (I, 1), "Bandwidth": (I, 1)}
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
E_RANGE_VOLTS = {0: 2.5, 1: 5.0, 2: 10.0, 3: 10.0}
FAULTS = (None, "no_reply", "garbled", "exception")
# ERR_COMM_COMMFAILED, ERR_INSTR_RESPERROR, ERR_INSTR_VMEERROR; BL_Connect: ERR_COMM_CONNECTIONFAILED, and an
# instrument failing inside still connects.
FAULT_CODES = {"no_reply": -200, "garbled": -104, "exception": -101}
CONNECT_FAULT_CODES = {"no_reply": -201, "garbled": -104}
EIS_SETTLE = 0.1  # s per frequency besides the periods averaged, as techniques.sweep_duration
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


@dataclass
class Loaded:
    """A technique loaded on the channel: its stem and parameter values by label and index."""

    stem: str
    values: dict[str, dict[int, float | int | bool]] = field(default_factory=dict)

    @property
    def technique_id(self) -> int:
        return TECHNIQUES[self.stem][0]

    @property
    def timebase(self) -> float:
        return float(np.float32(TECHNIQUES[self.stem][1]))  # reported as a single

    def get(self, label: str, index: int = 0, default=0):
        return self.values.get(label, {}).get(index, default)


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


class SimEClib:
    """The EC-Lab library over a simulated SP-200 with ``cell`` on channel ``channel`` (0-based).

    Parameters
    ----------
    clock : Clock
        The session clock; the instrument runs on it.
    cell : SimCell
        The cell wired to the channel.
    channel : int
        The plugged channel, 0-based.
    board_type : int
        ``eclib.BOARD_PREMIUM`` (VMP-300, SP-200) or ``eclib.BOARD_ESSENTIAL`` (VMP3); the ``.ecc``
        suffix and record layouts follow it.
    """

    device_id = 1

    def __init__(self, clock: Clock, cell: SimCell, channel: int = 0, board_type: int = eclib.BOARD_PREMIUM):
        self.clock, self.cell, self.channel, self.board_type = clock, cell, channel, board_type
        self.suffix = {eclib.BOARD_ESSENTIAL: "", eclib.BOARD_PREMIUM: "4"}[board_type]
        self.connected = self.firmware = self.built = False
        self.fault: str | None = None
        self.loaded: list[Loaded] = []
        self.memory: deque[Chunk] = deque()
        self.state = eclib.STATE_STOP
        self._latest = (cell.open_circuit_voltage(), 0.0)  # Ewe, I

    # ---- errors and connection -----------------------------------------------------------------
    def BL_GetErrorMsg(self, code, buffer, p_size) -> int:
        text = eclib.ERRORS.get(code, ("", f"unknown error code {code}"))[1].encode("ascii")
        size = p_size.contents.value
        data = text[: max(size - 1, 0)]
        ctypes.memmove(buffer, data + b"\0", len(data) + 1)
        p_size.contents.value = len(data)
        return 0

    def BL_Connect(self, address, timeout, p_id, p_info) -> int:
        if not address:
            return -203  # ERR_COMM_INVALIDIPADDRESS
        if self.fault in CONNECT_FAULT_CODES:
            return CONNECT_FAULT_CODES[self.fault]
        self.connected = True
        p_id.contents.value = self.device_id
        info = p_info.contents
        info.DeviceCode, info.NumberOfChannels, info.NumberOfSlots = eclib.DEVICE_SP200, 1, 1
        info.FirmwareVersion, info.NbOfConnectedPC = 1, 1
        return 0

    def BL_Disconnect(self, device_id) -> int:
        if error := self._check(device_id):
            return error
        self.connected = False
        return 0

    def BL_TestConnection(self, device_id) -> int:
        return self._check(device_id)

    def disconnect(self) -> None:
        """Drop the library's session with the instrument, as a link that went down does (for tests)."""
        self.connected = False

    def _check(self, device_id, channel: int | None = None) -> int:
        if not self.connected or device_id != self.device_id:
            return -1  # ERR_GEN_NOTCONNECTED
        if self.fault is not None:
            return FAULT_CODES[self.fault]
        if channel is not None and channel != self.channel:
            return -3  # ERR_GEN_CHANNELNOTPLUGGED
        return 0

    def _check_ready(self, device_id, channel) -> int:
        error = self._check(device_id, channel)
        if error == 0 and not self.firmware:
            return -308  # ERR_FIRM_FIRMWARENOTLOADED
        return error

    def BL_LoadFirmware(self, device_id, channels, results, length, show_gauge, force, bin_file, xlx_file) -> int:
        if error := self._check(device_id):
            return error
        if self.state != eclib.STATE_STOP:
            return -13
        for ch in range(length):
            if channels[ch]:
                results[ch] = 0 if ch == self.channel else -3
        self.firmware = self.firmware or bool(channels[self.channel])
        return 0

    # ---- channel information -------------------------------------------------------------------
    def BL_GetChannelInfos(self, device_id, channel, p_info) -> int:
        if error := self._check(device_id, channel):
            return error
        self._advance()
        info = p_info.contents
        info.Channel, info.BoardVersion, info.Zboard = channel, 4, 1
        info.FirmwareCode = eclib.FIRMWARE_KERNEL if self.firmware else eclib.FIRMWARE_NONE
        info.MemSize, info.MemFilled, info.State = 1 << 22, self._memory_bytes(), self.state
        info.MaxIRange, info.MinIRange, info.MaxBandwidth = 9, 5, 9  # 100 mA .. 10 uA, as an SP-200
        info.NbOfTechniques = len(self.loaded)
        return 0

    def BL_GetChannelBoardType(self, device_id, channel, p_type) -> int:
        if error := self._check(device_id, channel):
            return error
        p_type.contents.value = self.board_type
        return 0

    # ---- parameters and techniques -------------------------------------------------------------
    def _define(self, label, kind: int, raw: int, index, p_param) -> int:
        if not label or len(label) > 63:
            return -4
        param = p_param.contents
        param.ParamStr, param.ParamType, param.ParamVal, param.ParamIndex = label, kind, raw, index
        return 0

    def BL_DefineBoolParameter(self, label, value, index, p_param) -> int:
        return self._define(label, B, int(bool(value)), index, p_param)

    def BL_DefineSglParameter(self, label, value, index, p_param) -> int:
        return self._define(label, S, float_to_int32(value), index, p_param)

    def BL_DefineIntParameter(self, label, value, index, p_param) -> int:
        return self._define(label, I, int(value), index, p_param)

    def _stem(self, file_name: bytes) -> tuple[str | None, int]:
        name = file_name.decode("ascii", "replace").rsplit("\\", 1)[-1].rsplit("/", 1)[-1].lower()
        base = name.removesuffix(".ecc")
        for stem in TECHNIQUES:
            for suffix in ("", "4", "5"):
                if base == stem + suffix and name.endswith(".ecc"):
                    return stem, 0 if suffix == self.suffix else -401  # ERR_TECH_INCOMPATIBLEECC
        return None, -400  # ERR_TECH_ECCFILENOTEXISTS

    def _parse(self, stem: str, params: eclib.EccParams) -> dict | None:
        """Return the values by label and index, or None if any parameter is not the technique's."""
        table = {**TECHNIQUES[stem][2], **_HARDWARE}
        values: dict[str, dict[int, float | int | bool]] = {}
        for n in range(params.len):
            p = params.pParams[n]
            label = p.ParamStr.decode("ascii", "replace")
            kind, length = table.get(label, (None, 0))
            if kind != p.ParamType or not 0 <= p.ParamIndex < length:
                return None
            value = bits_to_float(p.ParamVal) if kind == S else bool(p.ParamVal) if kind == B else p.ParamVal
            values.setdefault(label, {})[p.ParamIndex] = value
        if stem in ("cp", "cplimit") and values.get("I_Range", {}).get(0) == 12:
            return None  # CP refuses I auto-range (guide 7.5.1)
        return values

    def BL_LoadTechnique(self, device_id, channel, file_name, params, first, last, display) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self._advance()
        if self.state != eclib.STATE_STOP:
            return -13  # ERR_GEN_CHANNEL_RUNNING
        stem, error = self._stem(file_name)
        if error:
            return error
        values = self._parse(stem, params)
        if values is None:
            return -4
        if first:
            self.loaded, self.built = [], False
        self.loaded.append(Loaded(stem, values))
        self.built = bool(last)
        return 0

    def BL_UpdateParameters(self, device_id, channel, technique_index, params, file_name) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        if params.len > 10 or not 0 <= technique_index < len(self.loaded):
            return -15  # ERR_GEN_UPDATEPARAMETERS
        stem, error = self._stem(file_name)
        if error or stem != self.loaded[technique_index].stem:
            return error or -15
        values = self._parse(stem, params)
        if values is None:
            return -4
        self._advance()
        for label, by_index in values.items():
            self.loaded[technique_index].values.setdefault(label, {}).update(by_index)
        return 0

    # ---- running -------------------------------------------------------------------------------
    def BL_StartChannel(self, device_id, channel) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self._advance()
        if self.state != eclib.STATE_STOP:
            return -13
        if not self.loaded or not self.built:
            return -6  # ERR_GEN_FUNCTIONFAILED: nothing loaded with its last flag
        now = self.clock.now()
        self.cell.advance(now, 0.0)  # open circuit since the last technique
        self.state, self.t0, self.loop_number, self.loop_counts = eclib.STATE_RUN, now, 0, {}
        self._begin(0, now)
        return 0

    def BL_StopChannel(self, device_id, channel) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self._advance()  # what was measured until now stays in memory
        self._stop()
        return 0

    def _begin(self, index: int, when: float) -> None:
        """Start technique ``index`` at ``when``; a LOOP jumps at once."""
        while index < len(self.loaded) and self.loaded[index].stem == "loop":
            loop = self.loaded[index]
            done = self.loop_counts.get(index, 0)
            if done < loop.get("loop_N_times"):
                self.loop_counts[index], self.loop_number = done + 1, self.loop_number + 1
                index = loop.get("protocol_number")
            else:
                index += 1
        if index >= len(self.loaded):
            self._stop()
            return
        self.index, self.tech_start, self.step, self.cycle = index, when, 0, 0
        technique = self.loaded[index]
        if technique.stem in ("geis", "peis"):
            self._begin_sweep(technique, when)
        else:
            self._begin_step(when)

    def _begin_step(self, when: float) -> None:
        technique = self.loaded[self.index]
        self.step_start, self.sampled = when, when
        duration = technique.get("Rest_time_T") if technique.stem == "ocv" else technique.get("Duration_step", self.step)
        self._step_end = when + duration

    def _begin_sweep(self, technique: Loaded, when: float) -> None:
        count = technique.get("Frequency_number")
        f_max, f_min = technique.get("Initial_frequency"), technique.get("Final_frequency")
        self.frequencies = np.logspace(np.log10(f_max), np.log10(f_min), count)
        self.impedance = self.cell.impedance(self.frequencies)
        per_point = technique.get("Average_N_times") / self.frequencies + EIS_SETTLE
        self.point_times = when + np.cumsum(per_point)
        self.points_done, self.step_start, self.sampled = 0, when, when
        self._step_end = float(self.point_times[-1])

    def _stop(self) -> None:
        self.state = eclib.STATE_STOP

    def _advance(self) -> None:
        """Run the channel up to now: record what it measured, move through steps and techniques."""
        now = self.clock.now()
        while self.state == eclib.STATE_RUN:
            technique = self.loaded[self.index]
            if technique.stem in ("geis", "peis"):
                self._record_sweep(technique, min(now, self._step_end))
            else:
                limit_hit = self._record_step(technique, min(now, self._step_end))
                if limit_hit is not None:
                    self._after_limit(technique, limit_hit)
                    continue
            if now < self._step_end:
                return
            self._next(technique, self._step_end)

    def _next(self, technique: Loaded, when: float) -> None:
        """Go on after a step that ran its full duration."""
        if technique.stem not in ("geis", "peis", "ocv") and self.step < technique.get("Step_number"):
            self.step += 1
            self._begin_step(when)
        elif technique.stem not in ("geis", "peis", "ocv") and self.cycle < technique.get("N_Cycles"):
            self.step, self.cycle = 0, self.cycle + 1
            self._begin_step(when)
        else:
            self._begin(self.index + 1, when)

    def _after_limit(self, technique: Loaded, when: float) -> None:
        exit_condition = technique.get("Exit_Cond", self.step)
        if exit_condition == 2:
            self._stop()
        elif exit_condition == 1:
            self._begin(self.index + 1, when)
        else:
            self._step_end = when
            self._next(technique, when)

    def _grid(self, dt: float, until: float) -> np.ndarray:
        """Return the sample times of the current step after the last one recorded, up to ``until``."""
        # ``sampled`` is on the grid: round to its index. Times are absolute (~1e9 s, a float64 ulp
        # of ~1e-7 s), so with a 0.1 s step a floor could land one sample back and repeat it forever.
        first = np.rint((self.sampled - self.step_start) / dt) + 1
        last = np.floor((until - self.step_start) / dt + 1e-6)
        return self.step_start + dt * np.arange(first, last + 1)

    def _record_step(self, technique: Loaded, until: float) -> float | None:
        """Record OCV, CP, CA (with limits) samples up to ``until``; return the time a limit ended the step."""
        times = self._grid(technique.get("Record_every_dT") or 1.0, until)
        if len(times) == 0:
            return None
        if technique.stem in ("ca", "calimit"):
            voltage = technique.get("Voltage_step", self.step)
            current = self.cell.potentiostatic(times, voltage, since=self.step_start)
            ewe = voltage + self.cell.rng.normal(0, self.cell.params.voltage_noise, len(times))
        else:
            applied = 0.0 if technique.stem == "ocv" else technique.get("Current_step", self.step)
            ewe = self.cell.galvanostatic(times, applied)
            current = applied + self.cell.rng.normal(0, self.cell.params.current_noise, len(times))
        hit = self._limit_index(technique, ewe, current)
        keep = len(times) if hit is None else hit + 1  # the instrument records the point that tripped
        self._store_dc(technique, 0, times[:keep], ewe[:keep], current[:keep], with_cycle=technique.stem != "ocv")
        self.sampled = times[keep - 1]
        return None if hit is None else float(times[hit])

    def _limit_index(self, technique: Loaded, ewe: np.ndarray, current: np.ndarray) -> int | None:
        """Return the first sample at which the step's Test1..3 hold, or None."""
        if technique.stem not in ("cplimit", "calimit"):
            return None
        result = None
        for n in (1, 2, 3):
            config = technique.get(f"Test{n}_Config", self.step)
            if not config & 1:
                break
            variable = current if config >> 5 == 3 else ewe
            value = technique.get(f"Test{n}_Value", self.step)
            test = variable >= value if config >> 2 & 1 else variable <= value
            result = test if result is None else (result & test if config >> 1 & 1 else result | test)
        if result is None or not result.any():
            return None
        return int(np.argmax(result))

    def _record_sweep(self, technique: Loaded, until: float) -> None:
        """Record the DC level (process 0) and the frequencies finished (process 1) up to ``until``."""
        times = self._grid(technique.get("Record_every_dT") or 1.0, until)
        bias = technique.get("Initial_Current_step") if technique.stem == "geis" else 0.0
        if len(times):
            ewe = self.cell.galvanostatic(times, bias)
            current = bias + self.cell.rng.normal(0, self.cell.params.current_noise, len(times))
            self._store_dc(technique, 0, times, ewe, current, with_cycle=False)
            self.sampled = times[-1]
        done = int(np.searchsorted(self.point_times, until, side="right"))
        if done > self.points_done:
            self._store_points(technique, slice(self.points_done, done), bias)
            self.points_done = done

    def _store_dc(self, technique, process, times, ewe, current, with_cycle: bool) -> None:
        ticks = np.rint((times - self.tech_start) / technique.timebase).astype(np.uint64)
        columns = [(ticks >> np.uint64(32)).astype(np.uint32), (ticks & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                   singles(ewe)]
        if technique.stem == "ocv" and self.board_type == eclib.BOARD_ESSENTIAL:
            columns.append(singles(np.zeros(len(times))))  # Ece: the simulated CE is the reference
        elif technique.stem != "ocv":
            columns.append(singles(current))
        if with_cycle:
            columns.append(np.full(len(times), self.cycle, dtype=np.uint32))
        self._push(technique, process, np.column_stack(columns))
        self._latest = (float(ewe[-1]), float(current[-1]) if technique.stem != "ocv" else 0.0)

    def _store_points(self, technique: Loaded, points: slice, bias: float) -> None:
        z = self.impedance[points]
        amplitude = technique.get("Amplitude_Current" if technique.stem == "geis" else "Amplitude_Voltage")
        abs_i = np.full(len(z), amplitude) if technique.stem == "geis" else amplitude / np.abs(z)
        ewe, current = self._latest
        zero = np.zeros(len(z))
        columns = [self.frequencies[points], np.abs(z) * abs_i, abs_i, np.degrees(np.angle(z)),
                   np.full(len(z), ewe), np.full(len(z), bias if technique.stem == "geis" else current),
                   zero, zero, zero, zero, zero, zero, zero, self.point_times[points] - self.tech_start]
        words = singles(np.column_stack(columns))
        if self.board_type == eclib.BOARD_ESSENTIAL:
            words = np.column_stack([words, np.full(len(z), technique.get("I_Range"), dtype=np.uint32)])
        self._push(technique, 1, words)

    def _push(self, technique: Loaded, process: int, words: np.ndarray) -> None:
        self.memory.append(Chunk(self.index, technique.technique_id, process, self.loop_number,
                                 self.tech_start - self.t0, technique.timebase, np.ascontiguousarray(words)))

    def _memory_bytes(self) -> int:
        return sum(chunk.words.nbytes for chunk in self.memory)

    # ---- data ----------------------------------------------------------------------------------
    def _fill_values(self, values: eclib.CurrentValues, timebase: float) -> None:
        technique = self.loaded[self.index] if self.loaded and self.state == eclib.STATE_RUN else None
        e_range = E_RANGE_VOLTS[technique.get("E_Range", default=2) if technique else 2]
        values.State, values.MemFilled, values.TimeBase = self.state, self._memory_bytes(), timebase
        # A stopped channel is at open circuit: the cell's own voltage, no current.
        values.Ewe, values.I = self._latest if self.state == eclib.STATE_RUN else (self.cell.open_circuit_voltage(), 0.0)
        values.EweRangeMin, values.EweRangeMax = -e_range, e_range
        values.IRange = technique.get("I_Range", default=12) if technique else 12
        values.ElapsedTime = self.clock.now() - getattr(self, "t0", self.clock.now())

    def BL_GetCurrentValues(self, device_id, channel, p_values) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self._advance()
        technique = self.loaded[self.index] if self.state == eclib.STATE_RUN else None
        self._fill_values(p_values.contents, technique.timebase if technique else 0.0)
        return 0

    def BL_GetData(self, device_id, channel, buffer, p_info, p_values) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self._advance()
        info = p_info.contents
        if not self.memory:
            info.NbRows = info.NbCols = 0
            self._fill_values(p_values.contents, 0.0)
            return 0
        chunk = self.memory[0]
        cols = chunk.words.shape[1]
        rows = min(len(chunk.words), BUFFER_WORDS // cols)
        taken, chunk.words = chunk.words[:rows], chunk.words[rows:]
        if len(chunk.words) == 0:
            self.memory.popleft()
        ctypes.memmove(buffer, taken.ctypes.data, taken.nbytes)
        info.NbRows, info.NbCols, info.TechniqueIndex = rows, cols, chunk.technique_index
        info.TechniqueID, info.ProcessIndex, info.loop = chunk.technique_id, chunk.process, chunk.loop
        info.StartTime, info.IRQskipped = chunk.start, 0
        self._fill_values(p_values.contents, chunk.timebase)
        return 0

    def BL_ConvertNumericIntoSingle(self, word, p_float) -> int:
        p_float.contents.value = bits_to_float(word)
        return 0

    def BL_ConvertChannelNumericIntoSingle(self, word, p_float, board_type) -> int:
        if board_type not in (eclib.BOARD_ESSENTIAL, eclib.BOARD_PREMIUM):
            return -4
        return self.BL_ConvertNumericIntoSingle(word, p_float)

    # ---- for tests ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Get whether the channel is running, as of now."""
        self._advance()
        return self.state == eclib.STATE_RUN
