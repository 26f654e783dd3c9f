"""ctypes binding of BioLogic's EC-Lab Development Package library (``EClib64.dll``/``EClib.dll``).

Structures, function prototypes and error codes follow the package's user guide (v6.11, sections
5 and 6) and BioLogic's Delphi unit ``EClib.pas``. Every structure is aligned on 32 bits (guide,
section 3.2), hence ``_pack_ = 4``: it matters for ``TDataInfos``, whose ``double`` would otherwise
move to offset 32, and for ``TEccParams``, whose pointer would otherwise move to offset 8 on 64-bit
Windows.

:class:`EClib` wraps either the real library, loaded by path (Windows only: the vendor ships no
other build), or any object exposing the same ``BL_*`` functions with the same arguments, such as
``devices.sim.eclib.SimEClib``. It passes ctypes objects exactly as the DLL expects them (structures
by value or by pointer, C strings as bytes), so the simulated library sees what the real one sees.
A negative return code becomes an :class:`EClibError` subclass carrying the code, its name and the
library's own message.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import POINTER, c_bool, c_char_p, c_double, c_float, c_int32, c_uint8, c_uint32
from enum import IntEnum
from pathlib import Path

MAX_CHANNELS = 16
BUFFER_WORDS = 1000

# Device codes (guide 5.3) this driver names; BL_Connect reports the others as numbers.
DEVICE_SP200 = 21
DEVICE_SP300 = 16

# Firmware codes (TChannelInfos.FirmwareCode).
FIRMWARE_NONE = 0
FIRMWARE_KERNEL = 5  # the firmware the library drives; EC-Lab's own is FIRMWARE_INTERPR = 1

# Channel states.
STATE_STOP, STATE_RUN, STATE_PAUSE = 0, 1, 2

# Parameter types (TEccParam.ParamType).
PARAM_INT32, PARAM_BOOLEAN, PARAM_SINGLE = 0, 1, 2

# Board types (BL_GetChannelBoardType): they decide the .ecc suffix and the data layout.
BOARD_UNKNOWN, BOARD_ESSENTIAL, BOARD_PREMIUM, BOARD_PREMIUM_P = 0, 1, 2, 3


class DeviceInfo(ctypes.Structure):
    """``TDeviceInfos``: what ``BL_Connect`` reports about the instrument."""

    _pack_ = 4
    _fields_ = [
        ("DeviceCode", c_int32),
        ("RAMsize", c_int32),
        ("CPU", c_int32),
        ("NumberOfChannels", c_int32),
        ("NumberOfSlots", c_int32),
        ("FirmwareVersion", c_int32),
        ("FirmwareDate_yyyy", c_int32),
        ("FirmwareDate_mm", c_int32),
        ("FirmwareDate_dd", c_int32),
        ("HTdisplayOn", c_int32),
        ("NbOfConnectedPC", c_int32),
    ]


class ChannelInfo(ctypes.Structure):
    """``TChannelInfos``: firmware, amplifier, memory, state and allowed ranges of one channel."""

    _pack_ = 4
    _fields_ = [
        ("Channel", c_int32),
        ("BoardVersion", c_int32),
        ("BoardSerialNumber", c_int32),
        ("FirmwareCode", c_int32),
        ("FirmwareVersion", c_int32),
        ("XilinxVersion", c_int32),
        ("AmpCode", c_int32),
        ("NbAmps", c_int32),
        ("LCboard", c_int32),
        ("Zboard", c_int32),
        ("MUXboard", c_int32),  # "RESERVED" in guide v6.11
        ("GPRAboard", c_int32),  # "RESERVED" in guide v6.11
        ("MemSize", c_int32),
        ("MemFilled", c_int32),
        ("State", c_int32),
        ("MaxIRange", c_int32),
        ("MinIRange", c_int32),
        ("MaxBandwidth", c_int32),
        ("NbOfTechniques", c_int32),
    ]


class CurrentValues(ctypes.Structure):
    """``TCurrentValues``: the channel's latest readings, returned alone or with every data buffer."""

    _pack_ = 4
    _fields_ = [
        ("State", c_int32),
        ("MemFilled", c_int32),
        ("TimeBase", c_float),
        ("Ewe", c_float),
        ("EweRangeMin", c_float),
        ("EweRangeMax", c_float),
        ("Ece", c_float),
        ("EceRangeMin", c_float),
        ("EceRangeMax", c_float),
        ("Eoverflow", c_int32),
        ("I", c_float),
        ("IRange", c_int32),
        ("Ioverflow", c_int32),
        ("ElapsedTime", c_float),
        ("Freq", c_float),
        ("Rcomp", c_float),
        ("Saturation", c_int32),
        ("OptErr", c_int32),
        ("OptPos", c_int32),
    ]


class DataInfo(ctypes.Structure):
    """``TDataInfos``: which technique and process wrote a data buffer, and its shape."""

    _pack_ = 4
    _fields_ = [
        ("IRQskipped", c_int32),
        ("NbRows", c_int32),
        ("NbCols", c_int32),
        ("TechniqueIndex", c_int32),
        ("TechniqueID", c_int32),
        ("ProcessIndex", c_int32),
        ("loop", c_int32),
        ("StartTime", c_double),
        ("MuxPad", c_int32),
    ]


class EccParam(ctypes.Structure):
    """``TEccParam``: one technique parameter; ``ParamVal`` holds the value's 32 raw bits."""

    _pack_ = 4
    _fields_ = [
        ("ParamStr", ctypes.c_char * 64),
        ("ParamType", c_int32),
        ("ParamVal", c_int32),
        ("ParamIndex", c_int32),
    ]


class EccParams(ctypes.Structure):
    """``TEccParams``: a length and a pointer to the first of ``len`` :class:`EccParam`, passed by value."""

    _pack_ = 4
    _fields_ = [("len", c_int32), ("pParams", POINTER(EccParam))]


DataBuffer = c_uint32 * BUFFER_WORDS

# Name -> argument types; every function returns an int32 error code (guide 5.4).
PROTOTYPES: dict[str, list] = {
    "BL_GetErrorMsg": [c_int32, c_char_p, POINTER(c_uint32)],
    "BL_Connect": [c_char_p, c_uint8, POINTER(c_int32), POINTER(DeviceInfo)],
    "BL_Disconnect": [c_int32],
    "BL_TestConnection": [c_int32],
    "BL_LoadFirmware": [
        c_int32, POINTER(c_uint8), POINTER(c_int32), c_uint8, c_bool, c_bool, c_char_p, c_char_p,
    ],
    "BL_GetChannelInfos": [c_int32, c_uint8, POINTER(ChannelInfo)],
    "BL_GetChannelBoardType": [c_int32, c_uint8, POINTER(c_uint32)],
    "BL_DefineBoolParameter": [c_char_p, c_bool, c_int32, POINTER(EccParam)],
    "BL_DefineSglParameter": [c_char_p, c_float, c_int32, POINTER(EccParam)],
    "BL_DefineIntParameter": [c_char_p, c_int32, c_int32, POINTER(EccParam)],
    "BL_LoadTechnique": [c_int32, c_uint8, c_char_p, EccParams, c_bool, c_bool, c_bool],
    "BL_UpdateParameters": [c_int32, c_uint8, c_int32, EccParams, c_char_p],
    "BL_StartChannel": [c_int32, c_uint8],
    "BL_StopChannel": [c_int32, c_uint8],
    "BL_GetCurrentValues": [c_int32, c_uint8, POINTER(CurrentValues)],
    "BL_GetData": [c_int32, c_uint8, POINTER(c_uint32), POINTER(DataInfo), POINTER(CurrentValues)],
    "BL_ConvertNumericIntoSingle": [c_uint32, POINTER(c_float)],
    "BL_ConvertChannelNumericIntoSingle": [c_uint32, POINTER(c_float), c_uint32],
}


class ErrorCode(IntEnum):
    """The library's return codes (guide 5.4), named as kbio names them; ``description`` is the guide's text.

    The one table of codes: the binding's messages, the simulator's answers and the backend's list
    of transient failures all read it.
    """

    description: str

    def __new__(cls, code: int, description: str) -> "ErrorCode":
        member = int.__new__(cls, code)
        member._value_, member.description = code, description
        return member

    GEN_NOTCONNECTED = -1, "no instrument connected"
    GEN_CONNECTIONINPROGRESS = -2, "connection in progress"
    GEN_CHANNELNOTPLUGGED = -3, "selected channel(s) unplugged"
    GEN_INVALIDPARAMETERS = -4, "invalid function parameters"
    GEN_FILENOTEXISTS = -5, "selected file does not exist"
    GEN_FUNCTIONFAILED = -6, "function failed"
    GEN_NOCHANNELSELECTED = -7, "no channel selected"
    GEN_INVALIDCONF = -8, "invalid instrument configuration"
    GEN_ECLAB_LOADED = -9, "EC-Lab firmware loaded in the instrument"
    GEN_LIBNOTCORRECTLYLOADED = -10, "library not correctly loaded in memory"
    GEN_USBLIBRARYERROR = -11, "USB library not correctly loaded in memory"
    GEN_FUNCTIONINPROGRESS = -12, "function of the library already in progress"
    GEN_CHANNEL_RUNNING = -13, "selected channel(s) already used"
    GEN_DEVICE_NOTALLOWED = -14, "device not allowed"
    GEN_UPDATEPARAMETERS = -15, "invalid update function parameters"
    INSTR_VMEERROR = -101, "internal instrument communication failed"
    INSTR_TOOMANYDATA = -102, "too many data to transfer from the instrument"
    INSTR_RESPNOTPOSSIBLE = -103, "selected channel(s) unplugged"
    INSTR_RESPERROR = -104, "instrument response error"
    INSTR_MSGSIZEERROR = -105, "invalid message size"
    COMM_COMMFAILED = -200, "communication failed with the instrument"
    COMM_CONNECTIONFAILED = -201, "cannot establish connection with the instrument"
    COMM_WAITINGACK = -202, "waiting for the instrument response"
    COMM_INVALIDIPADDRESS = -203, "invalid IP address"
    COMM_ALLOCMEMFAILED = -204, "cannot allocate memory in the instrument"
    COMM_LOADFIRMWAREFAILED = -205, "cannot load firmware on the selected channel(s)"
    COMM_INCOMPATIBLESERVER = -206, "communication firmware not compatible with the library"
    COMM_MAXCONNREACHED = -207, "maximum number of allowed connections reached"
    FIRM_FIRMFILENOTEXISTS = -300, "cannot find kernel.bin file"
    FIRM_FIRMFILEACCESSFAILED = -301, "cannot read kernel.bin file"
    FIRM_FIRMINVALIDFILE = -302, "invalid kernel.bin file"
    FIRM_FIRMLOADINGFAILED = -303, "cannot load kernel.bin on the selected channel(s)"
    FIRM_XILFILENOTEXISTS = -304, "cannot find FPGA firmware file"
    FIRM_XILFILEACCESSFAILED = -305, "cannot read FPGA firmware file"
    FIRM_XILINVALIDFILE = -306, "invalid FPGA firmware file"
    FIRM_XILLOADINGFAILED = -307, "cannot load FPGA firmware file on the selected channel(s)"
    FIRM_FIRMWARENOTLOADED = -308, "no firmware loaded on the selected channel(s)"
    FIRM_FIRMWAREINCOMPATIBLE = -309, "loaded firmware not compatible with the library"
    TECH_ECCFILENOTEXISTS = -400, "cannot find the selected ECC file"
    TECH_INCOMPATIBLEECC = -401, "ECC file not compatible with the channel firmware"
    TECH_ECCFILECORRUPTED = -402, "ECC file is corrupted"
    TECH_LOADTECHNIQUEFAILED = -403, "cannot load the ECC file"
    TECH_DATACORRUPTED = -404, "data returned by the instrument are corrupted"
    TECH_MEMFULL = -405, "cannot load techniques: full memory"


# Error code -> (guide name, description), guide 5.4.
ERRORS: dict[int, tuple[str, str]] = {code.value: (f"ERR_{code.name}", code.description) for code in ErrorCode}


class EClibError(Exception):
    """A negative return code of the EC-Lab library.

    Parameters
    ----------
    code : int
        The return code (negative).
    function : str
        The ``BL_*`` function that returned it.
    message : str
        The library's own message for the code (``BL_GetErrorMsg``), or the guide's if unavailable.
    """

    def __init__(self, code: int, function: str, message: str):
        self.code, self.function, self.message = code, function, message
        self.name = ERRORS.get(code, (f"unknown error {code}", ""))[0]
        super().__init__(f"{function} returned {code} ({self.name}): {message}")


class GeneralError(EClibError):
    """Codes -1 to -99: connection, arguments, channel state."""


class ChannelBusy(GeneralError):
    """Code -13: the channel is running; stop it before loading or starting a technique."""


class InvalidParameters(GeneralError):
    """Code -4: a parameter label, type or index the technique does not accept."""


class InstrumentError(EClibError):
    """Codes -100 to -199: the instrument itself failed."""


class CommunicationError(EClibError):
    """Codes -200 to -299: the link to the instrument failed."""


class FirmwareError(EClibError):
    """Codes -300 to -399: channel firmware missing, unreadable or incompatible."""


class TechniqueError(EClibError):
    """Codes -400 to -499: .ecc file missing, incompatible with the board, or instrument memory full."""


_SPECIFIC: dict[int, type[EClibError]] = {ErrorCode.GEN_CHANNEL_RUNNING: ChannelBusy, ErrorCode.GEN_INVALIDPARAMETERS: InvalidParameters}
_FAMILIES = [(-100, GeneralError), (-200, InstrumentError), (-300, CommunicationError),
             (-400, FirmwareError), (-500, TechniqueError)]


def error_class(code: int) -> type[EClibError]:
    """Return the exception class for a negative return code."""
    if code in _SPECIFIC:
        return _SPECIFIC[code]
    for bound, cls in _FAMILIES:
        if code > bound:
            return cls
    return EClibError


def load_library(path: str | Path):
    """Load the vendor's DLL and declare every prototype this binding uses.

    The package's functions are ``stdcall`` (guide 3.1): ``WinDLL``, which exists on Windows only.
    """
    if sys.platform != "win32":
        raise OSError(
            f"the EC-Lab Development Package ({Path(path).name}) is a Windows DLL; on this platform "
            "pass a simulated library (devices.sim.eclib.SimEClib) instead"
        )
    dll = ctypes.WinDLL(str(path))  # type: ignore[attr-defined]
    for name, argtypes in PROTOTYPES.items():
        function = getattr(dll, name)
        function.argtypes, function.restype = argtypes, c_int32
    return dll


class EClib:
    """The EC-Lab library's functions as Python methods that raise on failure.

    Parameters
    ----------
    lib
        The loaded DLL (:func:`load_library`) or an object with the same ``BL_*`` functions.
    """

    def __init__(self, lib):
        self.lib = lib
        self._float = c_float()

    @classmethod
    def load(cls, path: str | Path) -> "EClib":
        """Load the real library from ``path`` (``EClib64.dll`` for a 64-bit Python)."""
        return cls(load_library(path))

    def check(self, code: int, function: str) -> int:
        """Raise the typed :class:`EClibError` for a negative ``code``; return it otherwise."""
        if code < 0:
            raise error_class(code)(code, function, self.error_message(code))
        return code

    def error_message(self, code: int) -> str:
        """Return the library's message for ``code`` (the guide's text if the library has none)."""
        buffer = ctypes.create_string_buffer(256)
        size = c_uint32(len(buffer))
        if self.lib.BL_GetErrorMsg(code, buffer, ctypes.pointer(size)) < 0:
            return ERRORS.get(code, ("", "unknown error"))[1]
        return buffer.value.decode("ascii", "replace")

    def _call(self, name: str, *args) -> int:
        return self.check(getattr(self.lib, name)(*args), name)

    # ---- communication and firmware ------------------------------------------------------------
    def connect(self, address: str, timeout: int = 5) -> tuple[int, DeviceInfo]:
        """Connect to the instrument at ``address`` (IP or ``USB0``); return its id and description."""
        device_id, info = c_int32(), DeviceInfo()
        self._call("BL_Connect", address.encode("ascii"), timeout, ctypes.pointer(device_id), ctypes.pointer(info))
        return device_id.value, info

    def disconnect(self, device_id: int) -> None:
        self._call("BL_Disconnect", device_id)

    def test_connection(self, device_id: int) -> None:
        """Raise unless the instrument answers."""
        self._call("BL_TestConnection", device_id)

    def load_firmware(self, device_id: int, channels: list[int], force: bool = False) -> list[int]:
        """Load the library's kernel on ``channels`` (0-based); return each channel's result code."""
        selected = (c_uint8 * MAX_CHANNELS)(*[1 if ch in channels else 0 for ch in range(MAX_CHANNELS)])
        results = (c_int32 * MAX_CHANNELS)()
        self._call("BL_LoadFirmware", device_id, selected, results, MAX_CHANNELS, False, force, None, None)
        for channel in channels:
            self.check(results[channel], f"BL_LoadFirmware (channel {channel})")
        return list(results)

    # ---- channel information -------------------------------------------------------------------
    def channel_info(self, device_id: int, channel: int) -> ChannelInfo:
        info = ChannelInfo()
        self._call("BL_GetChannelInfos", device_id, channel, ctypes.pointer(info))
        return info

    def board_type(self, device_id: int, channel: int) -> int:
        """Return the channel's board type (``BOARD_ESSENTIAL``, ``BOARD_PREMIUM`` or ``BOARD_PREMIUM_P``)."""
        value = c_uint32()
        self._call("BL_GetChannelBoardType", device_id, channel, ctypes.pointer(value))
        return value.value

    # ---- techniques ----------------------------------------------------------------------------
    def define_parameter(self, label: str, value, index: int, kind: int, into: EccParam) -> None:
        """Fill ``into`` with one parameter through the library's ``BL_Define*Parameter``."""
        name = {PARAM_BOOLEAN: "BL_DefineBoolParameter", PARAM_SINGLE: "BL_DefineSglParameter",
                PARAM_INT32: "BL_DefineIntParameter"}[kind]
        self._call(name, label.encode("ascii"), value, index, ctypes.pointer(into))

    def load_technique(self, device_id: int, channel: int, ecc_file: str, params: EccParams,
                       first: bool, last: bool) -> None:
        """Load one technique; linked techniques are loaded in order, the first and last flagged."""
        self._call("BL_LoadTechnique", device_id, channel, ecc_file.encode("ascii"), params, first, last, False)

    def update_parameters(self, device_id: int, channel: int, technique_index: int, params: EccParams,
                          ecc_file: str) -> None:
        """Change at most ten parameters of a running technique."""
        self._call("BL_UpdateParameters", device_id, channel, technique_index, params, ecc_file.encode("ascii"))

    def start_channel(self, device_id: int, channel: int) -> None:
        self._call("BL_StartChannel", device_id, channel)

    def stop_channel(self, device_id: int, channel: int) -> None:
        self._call("BL_StopChannel", device_id, channel)

    # ---- data ----------------------------------------------------------------------------------
    def current_values(self, device_id: int, channel: int) -> CurrentValues:
        values = CurrentValues()
        self._call("BL_GetCurrentValues", device_id, channel, ctypes.pointer(values))
        return values

    def get_data(self, device_id: int, channel: int, buffer, info: DataInfo, values: CurrentValues) -> None:
        """Fill ``buffer`` (a :data:`DataBuffer`), ``info`` and ``values`` with the next data buffer."""
        self._call("BL_GetData", device_id, channel, buffer, ctypes.pointer(info), ctypes.pointer(values))

    def to_single(self, word: int, board_type: int | None = None) -> float:
        """Convert one data word to a float as the library does (the channel-aware call if a board is given)."""
        if board_type is None:
            self._call("BL_ConvertNumericIntoSingle", word, ctypes.pointer(self._float))
        else:
            self._call("BL_ConvertChannelNumericIntoSingle", word, ctypes.pointer(self._float), board_type)
        return self._float.value
