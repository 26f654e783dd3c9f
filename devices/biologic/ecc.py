"""Techniques as EC-Lab Development Package parameter lists (guide v6.11, section 7).

Each technique dataclass of :mod:`devices.biologic.techniques` encodes into a list of
:class:`Param` (label, value, index, type) for its ``.ecc`` file. The file depends on the channel's
board: ``cp.ecc`` on VMP3-series boards, ``cp4.ecc`` on VMP-300-series boards such as the SP-200's,
``cp5.ecc`` on their "P" revision; loading the wrong one fails with ``ERR_TECH_INCOMPATIBLEECC``.

Ranges are chosen here, at the edge, and checked against what the channel reports
(``TChannelInfos.MinIRange``/``MaxIRange``/``MaxBandwidth``): the current range is the smallest
that holds the technique's peak current (for GEIS, bias plus amplitude, with the amplitude at most
half the range, as BioLogic requires), the E range the smallest that holds the lab file's voltage
window. Constant-current and constant-voltage steps never use I auto-range, which CP refuses.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import singledispatch

from devices.biologic import eclib
from devices.biologic.techniques import CA, CALIMIT, CP, CPLIMIT, GEIS, LOOP, OCV, PEIS, Limit
from labctl.core.errors import LabctlError

# Current ranges (KBIO_IRANGE_*): code -> full scale, A.
I_RANGES = {0: 100e-12, 1: 1e-9, 2: 10e-9, 3: 100e-9, 4: 1e-6, 5: 10e-6, 6: 100e-6, 7: 1e-3, 8: 10e-3,
            9: 100e-3, 10: 1.0}
I_RANGE_AUTO = 12
# Potential ranges (KBIO_ERANGE_*): code -> +/- full scale, V.
E_RANGES = {0: 2.5, 1: 5.0, 2: 10.0}
# Bandwidths (KBIO_BW_1..9): 5 is EC-Lab's usual setting for DC work; impedance needs a faster loop.
BANDWIDTH_DC = 5
BANDWIDTH_EIS = 8
# EIS records its DC Ewe and I (process 0) this often during a sweep, s.
EIS_DC_RECORD = 1.0
# Highest and lowest sweep frequencies of an SP-200 with its impedance board, Hz.
EIS_FREQUENCY_RANGE = (10e-6, 7e6)

ECC_STEMS = {OCV: "ocv", CP: "cp", CA: "ca", CPLIMIT: "cplimit", CALIMIT: "calimit", PEIS: "peis",
             GEIS: "geis", LOOP: "loop"}
TECHNIQUE_IDS = {"ocv": 100, "ca": 101, "cp": 102, "peis": 104, "geis": 107, "loop": 150, "cplimit": 155,
                 "calimit": 157}
BOARD_SUFFIX = {eclib.BOARD_ESSENTIAL: "", eclib.BOARD_PREMIUM: "4", eclib.BOARD_PREMIUM_P: "5"}
EXIT_CONDITIONS = {"next step": 0, "next technique": 1, "stop": 2}
LIMIT_VARIABLES = {"Ewe": 0, "I": 3}  # AUX1 = 1 and AUX2 = 2 are not wired on this rig


class EncodingError(LabctlError, ValueError):
    """A technique the channel cannot run as asked; the message says which value and why."""


@dataclass(frozen=True)
class Param:
    """One ``TEccParam`` before it goes through the library: ``kind`` is ``eclib.PARAM_*``."""

    label: str
    value: float | int | bool
    kind: int
    index: int = 0


@dataclass(frozen=True)
class Hardware:
    """What the encoder needs to know about the channel and the lab file's limits.

    Parameters
    ----------
    board_type : int
        ``BL_GetChannelBoardType`` (``eclib.BOARD_PREMIUM`` for an SP-200).
    min_i_range, max_i_range : int
        Current range codes the channel allows (``TChannelInfos``).
    max_bandwidth : int
        Highest bandwidth code the channel allows.
    voltage_window : (float, float)
        The lab file's limits on Ewe - Ece, V; they set the E range and the instrument-side stop.
    current_limit : float
        The lab file's largest current, A; it sets the current range of voltage-controlled steps.
    """

    board_type: int = eclib.BOARD_PREMIUM
    min_i_range: int = 5
    max_i_range: int = 9
    max_bandwidth: int = 9
    voltage_window: tuple[float, float] = (-10.0, 10.0)
    current_limit: float = 0.01


def ecc_file(technique, board_type: int) -> str:
    """Return the ``.ecc`` file name of ``technique`` for a channel of ``board_type``."""
    if board_type not in BOARD_SUFFIX:
        raise EncodingError(f"board type {board_type} is not supported (VMP3 = 1, VMP-300 = 2, VMP-300 P = 3)")
    return f"{ECC_STEMS[type(technique)]}{BOARD_SUFFIX[board_type]}.ecc"


def technique_id(technique) -> int:
    """Return the ``KBIO_TECHID_*`` the instrument reports in ``TDataInfos`` for ``technique``."""
    return TECHNIQUE_IDS[ECC_STEMS[type(technique)]]


def single(label: str, value: float, index: int = 0) -> Param:
    """A single-precision EccParam."""
    return Param(label, float(value), eclib.PARAM_SINGLE, index)


def integer(label: str, value: int, index: int = 0) -> Param:
    """An integer EccParam."""
    return Param(label, int(value), eclib.PARAM_INT32, index)


def boolean(label: str, value: bool, index: int = 0) -> Param:
    """A boolean EccParam."""
    return Param(label, bool(value), eclib.PARAM_BOOLEAN, index)


# ---- ranges -------------------------------------------------------------------------------------
def current_range(peak: float, hardware: Hardware, amplitude: float = 0.0) -> int:
    """Return the smallest allowed range holding ``peak`` A with ``amplitude`` at most half of it."""
    for code in range(hardware.min_i_range, hardware.max_i_range + 1):
        full_scale = I_RANGES[code]
        if abs(peak) <= full_scale and amplitude <= full_scale / 2:
            return code
    largest = I_RANGES[hardware.max_i_range]
    raise EncodingError(
        f"{abs(peak) * 1e3:.4g} mA peak with a {amplitude * 1e3:.4g} mA amplitude needs a current range the "
        f"channel does not have (largest {largest * 1e3:g} mA; the amplitude may be at most half the range)"
    )


def potential_range(hardware: Hardware) -> int:
    """Return the smallest E range holding the lab file's voltage window."""
    extent = max(abs(v) for v in hardware.voltage_window)
    for code, full_scale in E_RANGES.items():
        if extent <= full_scale:
            return code
    raise EncodingError(f"voltage window {hardware.voltage_window} V exceeds the +/-10 V range of the channel")


def hardware_params(hardware: Hardware, i_range: int | None, bandwidth: int) -> list[Param]:
    """Return I_Range (if any), E_Range and Bandwidth, which any technique accepts (guide 7.1.3)."""
    params = [] if i_range is None else [integer("I_Range", i_range)]
    return params + [integer("E_Range", potential_range(hardware)),
                     integer("Bandwidth", min(bandwidth, hardware.max_bandwidth))]


def limit_config(limit: Limit) -> int:
    """Encode a limit as ``Test*_Config``: bit 0 active, bit 1 AND, bit 2 ``>=``, bits 5+ variable."""
    if limit.variable not in LIMIT_VARIABLES:
        raise EncodingError(f"limit variable {limit.variable!r}: use 'Ewe' or 'I'")
    return 1 | (limit.and_previous << 1) | (limit.above << 2) | (LIMIT_VARIABLES[limit.variable] << 5)


def limit_params(limits: tuple[Limit, ...], on_limit: str) -> list[Param]:
    """Return Test1..3 (inactive when absent) and the exit condition of a one-step technique."""
    if len(limits) > 3:
        raise EncodingError(f"{len(limits)} limits given; the instrument evaluates at most three")
    if on_limit not in EXIT_CONDITIONS:
        raise EncodingError(f"on_limit {on_limit!r}: use one of {sorted(EXIT_CONDITIONS)}")
    params = []
    for n in range(3):
        limit = limits[n] if n < len(limits) else None
        params += [integer(f"Test{n + 1}_Config", limit_config(limit) if limit else 0),
                   single(f"Test{n + 1}_Value", limit.value if limit else 0.0)]
    return params + [integer("Exit_Cond", EXIT_CONDITIONS[on_limit])]


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise EncodingError(f"{name} must be positive, got {value}")


# ---- techniques ---------------------------------------------------------------------------------
@singledispatch
def encode(technique, hardware: Hardware) -> list[Param]:
    """Return the parameter list of ``technique`` for its ``.ecc`` file, ranges checked."""
    raise EncodingError(f"{type(technique).__name__} has no EC-Lab encoding")


@encode.register
def _(technique: OCV, hardware: Hardware) -> list[Param]:
    _positive("duration", technique.duration)
    _positive("sample_interval", technique.sample_interval)
    return [single("Rest_time_T", technique.duration), single("Record_every_dE", 0.0),
            single("Record_every_dT", technique.sample_interval),
            integer("E_Range", potential_range(hardware))]


def _current_step(current: float, duration: float, sample_interval: float, hardware: Hardware) -> list[Param]:
    _positive("duration", duration)
    _positive("sample_interval", sample_interval)
    return [single("Current_step", current), boolean("vs_initial", False), single("Duration_step", duration),
            integer("Step_number", 0), single("Record_every_dT", sample_interval), single("Record_every_dE", 0.0),
            integer("N_Cycles", 0),
            *hardware_params(hardware, current_range(current, hardware), BANDWIDTH_DC)]


def _voltage_step(voltage: float, duration: float, sample_interval: float, hardware: Hardware) -> list[Param]:
    _positive("duration", duration)
    _positive("sample_interval", sample_interval)
    low, high = hardware.voltage_window
    if not low <= voltage <= high:
        raise EncodingError(f"{voltage:g} V is outside the voltage window [{low:g}, {high:g}] V")
    return [single("Voltage_step", voltage), boolean("vs_initial", False), single("Duration_step", duration),
            integer("Step_number", 0), single("Record_every_dT", sample_interval), single("Record_every_dI", 0.0),
            integer("N_Cycles", 0),
            *hardware_params(hardware, current_range(hardware.current_limit, hardware), BANDWIDTH_DC)]


@encode.register
def _(technique: CP, hardware: Hardware) -> list[Param]:
    return _current_step(technique.current, technique.duration, technique.sample_interval, hardware)


@encode.register
def _(technique: CA, hardware: Hardware) -> list[Param]:
    return _voltage_step(technique.voltage, technique.duration, technique.sample_interval, hardware)


@encode.register
def _(technique: CPLIMIT, hardware: Hardware) -> list[Param]:
    step = _current_step(technique.current, technique.duration, technique.sample_interval, hardware)
    return step + limit_params(technique.limits, technique.on_limit)


@encode.register
def _(technique: CALIMIT, hardware: Hardware) -> list[Param]:
    step = _voltage_step(technique.voltage, technique.duration, technique.sample_interval, hardware)
    return step + limit_params(technique.limits, technique.on_limit)


def _sweep(technique: GEIS | PEIS) -> list[Param]:
    low, high = EIS_FREQUENCY_RANGE
    if not low <= technique.f_min < technique.f_max <= high:
        raise EncodingError(
            f"sweep {technique.f_max:g} Hz to {technique.f_min:g} Hz: the SP-200 sweeps between {high:g} Hz and "
            f"{low:g} Hz, from high to low"
        )
    if technique.cycles < 1 or technique.points_per_decade < 1:
        raise EncodingError("cycles and points_per_decade must be at least 1")
    return [single("Duration_step", 0.0), integer("Step_number", 0), single("Record_every_dT", EIS_DC_RECORD),
            single("Initial_frequency", technique.f_max), single("Final_frequency", technique.f_min),
            boolean("sweep", False),  # False: logarithmic spacing
            integer("Frequency_number", len(technique.frequencies())),
            integer("Average_N_times", technique.cycles), boolean("Correction", False),
            single("Wait_for_steady", 0.0)]


@encode.register
def _(technique: GEIS, hardware: Hardware) -> list[Param]:
    _positive("amplitude", technique.amplitude)
    i_range = current_range(abs(technique.bias) + technique.amplitude, hardware, amplitude=technique.amplitude)
    return [boolean("vs_initial", False), boolean("vs_final", False),
            single("Initial_Current_step", technique.bias), single("Final_Current_step", technique.bias),
            *_sweep(technique), single("Record_every_dE", 0.0),
            single("Amplitude_Current", technique.amplitude),
            *hardware_params(hardware, i_range, BANDWIDTH_EIS)]


@encode.register
def _(technique: PEIS, hardware: Hardware) -> list[Param]:
    _positive("amplitude", technique.amplitude)
    # vs_initial: the steps are relative to the open-circuit voltage, so 0 V means "at rest".
    return [boolean("vs_initial", True), boolean("vs_final", True),
            single("Initial_Voltage_step", 0.0), single("Final_Voltage_step", 0.0),
            *_sweep(technique), single("Record_every_dI", 0.0),
            single("Amplitude_Voltage", technique.amplitude),
            *hardware_params(hardware, current_range(hardware.current_limit, hardware), BANDWIDTH_EIS)]


@encode.register
def _(technique: LOOP, hardware: Hardware) -> list[Param]:
    if technique.repeat < 0 or technique.to_technique < 0:
        raise EncodingError("LOOP repeat and to_technique must be >= 0")
    return [integer("loop_N_times", technique.repeat), integer("protocol_number", technique.to_technique)]


# ---- through the library ------------------------------------------------------------------------
def to_ecc_params(lib: eclib.EClib, params: list[Param]) -> eclib.EccParams:
    """Fill a ``TEccParams`` through the library's ``BL_Define*Parameter`` calls, as the guide does."""
    array = (eclib.EccParam * len(params))()
    for slot, param in zip(array, params):
        lib.define_parameter(param.label, param.value, param.index, param.kind, slot)
    # Assigning the cast pointer keeps ``array`` alive in the structure's ``_objects``.
    return eclib.EccParams(len(params), ctypes.cast(array, ctypes.POINTER(eclib.EccParam)))


def load_sequence(lib: eclib.EClib, device_id: int, channel: int, techniques: list, hardware: Hardware) -> None:
    """Load linked ``techniques`` on ``channel`` in order, flagging the first and the last."""
    encoded = [(ecc_file(t, hardware.board_type), encode(t, hardware)) for t in techniques]  # fail before loading
    for n, (file_name, params) in enumerate(encoded):
        lib.load_technique(device_id, channel, file_name, to_ecc_params(lib, params),
                           first=n == 0, last=n == len(encoded) - 1)
