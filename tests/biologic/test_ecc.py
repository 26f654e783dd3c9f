"""Technique encoding: replayed parameter lists (words computed here), ranges, linked loading, refusals."""

import struct

import pytest

from devices.biologic import ecc, eclib
from devices.biologic.ecc import EncodingError, Hardware, encode, to_ecc_params
from devices.biologic.eclib import InvalidParameters, TechniqueError
from devices.biologic.techniques import CA, CALIMIT, CP, CPLIMIT, GEIS, LOOP, OCV, PEIS, Limit

SP200 = Hardware(voltage_window=(-2.0, 2.0), current_limit=0.01)


def sgl(value):
    """The word BL_DefineSglParameter stores: the single's bits, as a signed int32."""
    return struct.unpack("<i", struct.pack("<f", value))[0]


def S(label, value, index=0):
    return (label, 2, sgl(value), index)


def I(label, value, index=0):
    return (label, 0, value, index)


def B(label, value, index=0):
    return (label, 1, int(value), index)


def replayed(lib, technique, hardware=SP200):
    """What the library received: (label, type, 32-bit value, index) of each TEccParam."""
    params = to_ecc_params(lib, encode(technique, hardware))
    return [(p.ParamStr.decode(), p.ParamType, p.ParamVal, p.ParamIndex)
            for p in (params.pParams[n] for n in range(params.len))]


DC_HARDWARE = [I("E_Range", 0), I("Bandwidth", 5)]  # +/-2 V window -> +/-2.5 V range
NO_LIMITS = [x for n in (1, 2, 3) for x in (I(f"Test{n}_Config", 0), S(f"Test{n}_Value", 0.0))]

CASES = {
    "OCV": (OCV(1800.0, 10.0), [S("Rest_time_T", 1800.0), S("Record_every_dE", 0.0), S("Record_every_dT", 10.0),
                                I("E_Range", 0)]),
    "CP": (CP(-1.5708e-4, 900.0, 1.0), [
        S("Current_step", -1.5708e-4), B("vs_initial", False), S("Duration_step", 900.0), I("Step_number", 0),
        S("Record_every_dT", 1.0), S("Record_every_dE", 0.0), I("N_Cycles", 0), I("I_Range", 7),  # 1 mA
        *DC_HARDWARE]),
    "CA": (CA(0.01, 120.0, 10.0), [
        S("Voltage_step", 0.01), B("vs_initial", False), S("Duration_step", 120.0), I("Step_number", 0),
        S("Record_every_dT", 10.0), S("Record_every_dI", 0.0), I("N_Cycles", 0), I("I_Range", 8),  # 10 mA limit
        *DC_HARDWARE]),
    "CPLIMIT": (CPLIMIT(1e-3, 60.0, (Limit("Ewe", True, 1.5), Limit("I", False, -2e-3, and_previous=True)),
                        0.5, "next technique"), [
        S("Current_step", 1e-3), B("vs_initial", False), S("Duration_step", 60.0), I("Step_number", 0),
        S("Record_every_dT", 0.5), S("Record_every_dE", 0.0), I("N_Cycles", 0), I("I_Range", 7), *DC_HARDWARE,
        I("Test1_Config", 0b101), S("Test1_Value", 1.5), I("Test2_Config", 0b1100011), S("Test2_Value", -2e-3),
        I("Test3_Config", 0), S("Test3_Value", 0.0), I("Exit_Cond", 1)]),
    "CALIMIT": (CALIMIT(-0.1, 30.0, (), 1.0, "stop"), [
        S("Voltage_step", -0.1), B("vs_initial", False), S("Duration_step", 30.0), I("Step_number", 0),
        S("Record_every_dT", 1.0), S("Record_every_dI", 0.0), I("N_Cycles", 0), I("I_Range", 8), *DC_HARDWARE,
        *NO_LIMITS, I("Exit_Cond", 2)]),
    "GEIS": (GEIS(bias=-1.5708e-4, amplitude=1.5708e-5, f_max=7e6, f_min=0.5), [
        B("vs_initial", False), B("vs_final", False), S("Initial_Current_step", -1.5708e-4),
        S("Final_Current_step", -1.5708e-4), S("Duration_step", 0.0), I("Step_number", 0),
        S("Record_every_dT", 1.0), S("Initial_frequency", 7e6), S("Final_frequency", 0.5), B("sweep", False),
        I("Frequency_number", 72), I("Average_N_times", 2), B("Correction", False), S("Wait_for_steady", 0.0),
        S("Record_every_dE", 0.0), S("Amplitude_Current", 1.5708e-5), I("I_Range", 7), I("E_Range", 0),
        I("Bandwidth", 8)]),
    "PEIS": (PEIS(amplitude=0.01, f_max=3.7e6, f_min=1.0, points_per_decade=5, cycles=1), [
        B("vs_initial", True), B("vs_final", True), S("Initial_Voltage_step", 0.0), S("Final_Voltage_step", 0.0),
        S("Duration_step", 0.0), I("Step_number", 0), S("Record_every_dT", 1.0), S("Initial_frequency", 3.7e6),
        S("Final_frequency", 1.0), B("sweep", False), I("Frequency_number", 34), I("Average_N_times", 1),
        B("Correction", False), S("Wait_for_steady", 0.0), S("Record_every_dI", 0.0),
        S("Amplitude_Voltage", 0.01), I("I_Range", 8), I("E_Range", 0), I("Bandwidth", 8)]),
    "LOOP": (LOOP(repeat=3, to_technique=1), [I("loop_N_times", 3), I("protocol_number", 1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_technique_encodes_to_the_parameter_words_the_library_expects(lib, name):
    technique, expected = CASES[name]
    assert replayed(lib, technique) == expected


def test_float_words_decode_back_to_the_requested_values(lib):
    params = to_ecc_params(lib, encode(CASES["GEIS"][0], SP200))
    amplitude = next(params.pParams[n] for n in range(params.len) if params.pParams[n].ParamStr == b"Amplitude_Current")
    assert struct.unpack("<f", struct.pack("<i", amplitude.ParamVal))[0] == pytest.approx(1.5708e-5, rel=1e-7)


@pytest.mark.parametrize("board, expected", [(eclib.BOARD_PREMIUM, "geis4.ecc"), (eclib.BOARD_ESSENTIAL, "geis.ecc"),
                                             (eclib.BOARD_PREMIUM_P, "geis5.ecc")])
def test_the_ecc_file_follows_the_board(board, expected):
    assert ecc.ecc_file(CASES["GEIS"][0], board) == expected


def test_the_limit_words_match_the_guides_worked_example():
    # Guide 7.38.5: ((E < 1.0 V) OR (AUX2 > 3.0 V)) AND (I < 0.05 A) is 1, 71, 97; (I > 0.1 A) is 101.
    assert ecc.limit_config(Limit("Ewe", False, 1.0)) == 1
    assert ecc.limit_config(Limit("I", False, 0.05)) == 97
    assert ecc.limit_config(Limit("I", True, 0.1)) == 101
    with pytest.raises(EncodingError, match="AUX"):
        ecc.limit_config(Limit("AUX2", True, 3.0))


def test_geis_amplitude_is_at_most_half_the_current_range():
    hardware = Hardware(min_i_range=5, max_i_range=9)
    # 0.4 mA bias fits 1 mA, but 0.6 mA amplitude needs a range of at least 1.2 mA: the 10 mA one.
    assert ecc.current_range(1e-3, hardware, amplitude=0.6e-3) == 8
    assert ecc.current_range(0.9e-3, hardware, amplitude=0.4e-3) == 7
    with pytest.raises(EncodingError, match="half the range"):
        encode(GEIS(bias=0.0, amplitude=0.06), hardware)


def test_ranges_the_channel_lacks_are_refused_before_anything_is_loaded():
    with pytest.raises(EncodingError, match="current range"):
        encode(CP(0.5, 10.0), SP200)  # 500 mA: above the 100 mA range
    with pytest.raises(EncodingError, match="10 V"):
        encode(OCV(10.0), Hardware(voltage_window=(-12.0, 12.0)))
    with pytest.raises(EncodingError, match="outside the voltage window"):
        encode(CA(3.0, 10.0), SP200)
    with pytest.raises(EncodingError, match="7e\\+06 Hz"):
        encode(GEIS(bias=0.0, amplitude=1e-5, f_max=1e7), SP200)
    with pytest.raises(EncodingError, match="duration"):
        encode(CP(1e-4, 0.0), SP200)
    assert ecc.potential_range(Hardware(voltage_window=(-4.0, 3.0))) == 1  # +/-5 V


def test_linked_techniques_load_in_order_with_first_and_last(connected, sim):
    lib, device_id = connected
    ecc.load_sequence(lib, device_id, 0, [OCV(10.0), CP(1e-4, 10.0), LOOP(1, 0)], SP200)
    assert [t.stem for t in sim.loaded] == ["ocv", "cp", "loop"] and sim.built
    ecc.load_sequence(lib, device_id, 0, [OCV(5.0)], SP200)  # first=True replaces the sequence
    assert [t.stem for t in sim.loaded] == ["ocv"]


def test_the_library_refuses_unknown_labels_and_wrong_types(connected):
    lib, device_id = connected
    wrong = [
        [ecc.single("Rest_time", 10.0)],  # misspelt (labels are case-sensitive)
        [ecc.integer("Rest_time_T", 10)],  # int where a single is expected
        [ecc.single("Current_step", 1e-4, index=0)],  # a CP label in OCV
        [ecc.integer("I_Range", 12), ecc.single("Current_step", 1e-4)],  # CP refuses I auto-range
    ]
    for params, file_name in zip(wrong, ["ocv4.ecc", "ocv4.ecc", "ocv4.ecc", "cp4.ecc"]):
        with pytest.raises(InvalidParameters):
            lib.load_technique(device_id, 0, file_name, to_ecc_params(lib, params), True, True)
    with pytest.raises(InvalidParameters):
        lib.load_technique(device_id, 0, "cp4.ecc", to_ecc_params(lib, [ecc.single("Duration_step", 1.0, 100)]),
                           True, True)  # index past the 100-step array


def test_the_library_refuses_the_wrong_ecc_file(connected):
    lib, device_id = connected
    params = to_ecc_params(lib, encode(OCV(10.0), SP200))
    with pytest.raises(TechniqueError, match="ERR_TECH_INCOMPATIBLEECC"):
        lib.load_technique(device_id, 0, "ocv.ecc", params, True, True)  # a VMP3 file on a VMP-300 board
    with pytest.raises(TechniqueError, match="ERR_TECH_ECCFILENOTEXISTS"):
        lib.load_technique(device_id, 0, "rest4.ecc", params, True, True)


def test_updating_more_than_ten_parameters_at_once_fails(connected):
    lib, device_id = connected
    ecc.load_sequence(lib, device_id, 0, [CP(1e-4, 100.0)], SP200)
    lib.start_channel(device_id, 0)
    eleven = to_ecc_params(lib, [ecc.single("Current_step", 1e-4, n) for n in range(11)])
    with pytest.raises(eclib.GeneralError, match="ERR_GEN_UPDATEPARAMETERS"):
        lib.update_parameters(device_id, 0, 0, eleven, "cp4.ecc")
    lib.update_parameters(device_id, 0, 0, to_ecc_params(lib, [ecc.single("Current_step", 2e-4)]), "cp4.ecc")
