"""The ``BL_*`` functions of the simulated library: arguments, checks and return codes, over a :class:`SimChannel`.

What it checks, as the real library does: connection and firmware before use, the ``.ecc`` file
against the board, every parameter label, type and index against the technique's table in the
guide (section 7), techniques loaded (first ... last) before a start, and a running channel before
loading, starting or updating. Where the guide names no code for a refusal the nearest one is
used: ``GEN_INVALIDPARAMETERS`` for a bad parameter, ``GEN_FUNCTIONFAILED`` for a start with
nothing loaded. Every code is an :class:`~devices.biologic.eclib.ErrorCode`; 0 is success.
"""

from __future__ import annotations

import ctypes
from collections import deque

from devices.biologic import eclib
from devices.biologic.eclib import ErrorCode
from devices.sim.cell import SimCell
from devices.sim.eclib.channel import SimChannel
from devices.sim.eclib.records import Chunk, bits_to_float, float_to_int32
from devices.sim.eclib.techniques import HARDWARE, TECHNIQUES, B, I, Loaded, S, Value
from labctl.core.clock import Clock

FAULTS = (None, "no_reply", "garbled", "exception")
# An instrument failing inside (``exception``) still connects: it answers.
FAULT_CODES = {"no_reply": ErrorCode.COMM_COMMFAILED, "garbled": ErrorCode.INSTR_RESPERROR,
               "exception": ErrorCode.INSTR_VMEERROR}
CONNECT_FAULT_CODES = {"no_reply": ErrorCode.COMM_CONNECTIONFAILED, "garbled": ErrorCode.INSTR_RESPERROR}


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
        self.connected = self.firmware = False
        self.fault: str | None = None
        self.instrument = SimChannel(clock, cell, board_type)

    # ---- for tests ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Get whether the channel is running, as of now."""
        self.instrument.advance()
        return self.instrument.running

    @property
    def loaded(self) -> list[Loaded]:
        """Get the techniques loaded on the channel."""
        return self.instrument.loaded

    @property
    def built(self) -> bool:
        """Get whether the loaded sequence was closed with the "last" flag."""
        return self.instrument.built

    @property
    def memory(self) -> deque[Chunk]:
        """Get the records waiting in the channel's memory."""
        return self.instrument.memory.chunks

    def disconnect(self) -> None:
        """Drop the library's session with the instrument, as a link that went down does."""
        self.connected = False

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
            return ErrorCode.COMM_INVALIDIPADDRESS
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

    def _check(self, device_id, channel: int | None = None) -> int:
        """Return why a call to the instrument fails (not connected, a fault, no such channel), or 0."""
        if not self.connected or device_id != self.device_id:
            return ErrorCode.GEN_NOTCONNECTED
        if self.fault is not None:
            return FAULT_CODES[self.fault]
        if channel is not None and channel != self.channel:
            return ErrorCode.GEN_CHANNELNOTPLUGGED
        return 0

    def _check_ready(self, device_id, channel) -> int:
        """As :meth:`_check`, and the channel's firmware must be loaded."""
        error = self._check(device_id, channel)
        if error == 0 and not self.firmware:
            return ErrorCode.FIRM_FIRMWARENOTLOADED
        return error

    def BL_LoadFirmware(self, device_id, channels, results, length, show_gauge, force, bin_file, xlx_file) -> int:
        if error := self._check(device_id):
            return error
        if self.instrument.running:
            return ErrorCode.GEN_CHANNEL_RUNNING
        for ch in range(length):
            if channels[ch]:
                results[ch] = 0 if ch == self.channel else ErrorCode.GEN_CHANNELNOTPLUGGED
        self.firmware = self.firmware or bool(channels[self.channel])
        return 0

    # ---- channel information -------------------------------------------------------------------
    def BL_GetChannelInfos(self, device_id, channel, p_info) -> int:
        if error := self._check(device_id, channel):
            return error
        self.instrument.advance()
        info = p_info.contents
        info.Channel, info.BoardVersion, info.Zboard = channel, 4, 1
        info.FirmwareCode = eclib.FIRMWARE_KERNEL if self.firmware else eclib.FIRMWARE_NONE
        info.MemSize, info.MemFilled, info.State = 1 << 22, self.instrument.memory.nbytes, self.instrument.state
        info.MaxIRange, info.MinIRange, info.MaxBandwidth = 9, 5, 9  # 100 mA .. 10 uA, as an SP-200
        info.NbOfTechniques = len(self.instrument.loaded)
        return 0

    def BL_GetChannelBoardType(self, device_id, channel, p_type) -> int:
        if error := self._check(device_id, channel):
            return error
        p_type.contents.value = self.board_type
        return 0

    # ---- parameters and techniques -------------------------------------------------------------
    def _define(self, label, kind: int, raw: int, index, p_param) -> int:
        if not label or len(label) > 63:
            return ErrorCode.GEN_INVALIDPARAMETERS
        param = p_param.contents
        param.ParamStr, param.ParamType, param.ParamVal, param.ParamIndex = label, kind, raw, index
        return 0

    def BL_DefineBoolParameter(self, label, value, index, p_param) -> int:
        return self._define(label, B, int(bool(value)), index, p_param)

    def BL_DefineSglParameter(self, label, value, index, p_param) -> int:
        return self._define(label, S, float_to_int32(value), index, p_param)

    def BL_DefineIntParameter(self, label, value, index, p_param) -> int:
        return self._define(label, I, int(value), index, p_param)

    def _stem(self, file_name: bytes) -> tuple[str, int]:
        """Return the technique an ``.ecc`` file runs and 0, or "" and why the board refuses the file."""
        name = file_name.decode("ascii", "replace").rsplit("\\", 1)[-1].rsplit("/", 1)[-1].lower()
        base = name.removesuffix(".ecc")
        for stem in TECHNIQUES:
            for suffix in ("", "4", "5"):
                if base == stem + suffix and name.endswith(".ecc"):
                    return stem, 0 if suffix == self.suffix else ErrorCode.TECH_INCOMPATIBLEECC
        return "", ErrorCode.TECH_ECCFILENOTEXISTS

    def _parse(self, stem: str, params: eclib.EccParams) -> dict[str, dict[int, Value]] | None:
        """Return the values by label and index, or None if any parameter is not the technique's."""
        table = {**TECHNIQUES[stem][2], **HARDWARE}
        values: dict[str, dict[int, Value]] = {}
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
        self.instrument.advance()
        if self.instrument.running:
            return ErrorCode.GEN_CHANNEL_RUNNING
        stem, error = self._stem(file_name)
        if error:
            return error
        values = self._parse(stem, params)
        if values is None:
            return ErrorCode.GEN_INVALIDPARAMETERS
        self.instrument.load(Loaded(stem, values), bool(first), bool(last))
        return 0

    def BL_UpdateParameters(self, device_id, channel, technique_index, params, file_name) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        loaded = self.instrument.loaded
        if params.len > 10 or not 0 <= technique_index < len(loaded):
            return ErrorCode.GEN_UPDATEPARAMETERS
        stem, error = self._stem(file_name)
        if error or stem != loaded[technique_index].stem:
            return error or ErrorCode.GEN_UPDATEPARAMETERS
        values = self._parse(stem, params)
        if values is None:
            return ErrorCode.GEN_INVALIDPARAMETERS
        self.instrument.advance()
        self.instrument.update(technique_index, values)
        return 0

    # ---- running -------------------------------------------------------------------------------
    def BL_StartChannel(self, device_id, channel) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self.instrument.advance()
        if self.instrument.running:
            return ErrorCode.GEN_CHANNEL_RUNNING
        if not self.instrument.loaded or not self.instrument.built:
            return ErrorCode.GEN_FUNCTIONFAILED  # nothing loaded with its last flag
        self.instrument.start()
        return 0

    def BL_StopChannel(self, device_id, channel) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self.instrument.advance()  # what was measured until now stays in memory
        self.instrument.stop()
        return 0

    # ---- data ----------------------------------------------------------------------------------
    def BL_GetCurrentValues(self, device_id, channel, p_values) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self.instrument.advance()
        technique = self.instrument.technique
        self.instrument.fill_values(p_values.contents, technique.timebase if technique else 0.0)
        return 0

    def BL_GetData(self, device_id, channel, buffer, p_info, p_values) -> int:
        if error := self._check_ready(device_id, channel):
            return error
        self.instrument.advance()
        info = p_info.contents
        read = self.instrument.memory.read(buffer)
        if read is None:
            info.NbRows = info.NbCols = 0
            self.instrument.fill_values(p_values.contents, 0.0)
            return 0
        chunk, rows, cols = read
        info.NbRows, info.NbCols, info.TechniqueIndex = rows, cols, chunk.technique_index
        info.TechniqueID, info.ProcessIndex, info.loop = chunk.technique_id, chunk.process, chunk.loop
        info.StartTime, info.IRQskipped = chunk.start, 0
        self.instrument.fill_values(p_values.contents, chunk.timebase)
        return 0

    def BL_ConvertNumericIntoSingle(self, word, p_float) -> int:
        p_float.contents.value = bits_to_float(word)
        return 0

    def BL_ConvertChannelNumericIntoSingle(self, word, p_float, board_type) -> int:
        if board_type not in (eclib.BOARD_ESSENTIAL, eclib.BOARD_PREMIUM):
            return ErrorCode.GEN_INVALIDPARAMETERS
        return self.BL_ConvertNumericIntoSingle(word, p_float)
