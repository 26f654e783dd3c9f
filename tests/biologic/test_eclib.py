"""The ctypes binding: structure layouts, error codes to typed exceptions, calls through the library."""

import ctypes
import struct
import sys

import pytest

from devices.biologic import eclib
from devices.biologic.eclib import (
    ChannelBusy, ChannelInfo, CommunicationError, CurrentValues, DataInfo, DeviceInfo, EccParam, EccParams,
    EClib, EClibError, FirmwareError, GeneralError, InstrumentError, InvalidParameters, TechniqueError,
)
from devices.biologic.techniques import OCV
from devices.biologic import ecc


def test_structures_are_packed_on_32_bits_as_the_library_lays_them_out():
    # Every field is 4 bytes but TDataInfos.StartTime: packed, it follows `loop` at offset 28.
    assert DataInfo.StartTime.offset == 28 and DataInfo.MuxPad.offset == 36 and ctypes.sizeof(DataInfo) == 40
    assert ctypes.sizeof(DeviceInfo) == 11 * 4
    assert ctypes.sizeof(ChannelInfo) == 19 * 4
    assert ctypes.sizeof(CurrentValues) == 19 * 4 and CurrentValues.OptPos.offset == 72
    assert ctypes.sizeof(EccParam) == 64 + 3 * 4 and EccParam.ParamVal.offset == 68
    pointer = ctypes.sizeof(ctypes.c_void_p)
    assert EccParams.pParams.offset == 4 and ctypes.sizeof(EccParams) == 4 + pointer
    assert ctypes.sizeof(eclib.DataBuffer) == 4000


def test_every_prototype_returns_an_error_code_and_names_a_real_function():
    assert set(eclib.PROTOTYPES) >= {
        "BL_Connect", "BL_Disconnect", "BL_TestConnection", "BL_LoadFirmware", "BL_GetChannelInfos",
        "BL_DefineBoolParameter", "BL_DefineSglParameter", "BL_DefineIntParameter", "BL_LoadTechnique",
        "BL_UpdateParameters", "BL_StartChannel", "BL_StopChannel", "BL_GetCurrentValues", "BL_GetData",
        "BL_ConvertNumericIntoSingle", "BL_GetErrorMsg",
    }
    assert eclib.PROTOTYPES["BL_LoadTechnique"][3] is EccParams  # passed by value, not by pointer


@pytest.mark.parametrize("code", sorted(eclib.ERRORS))
def test_every_negative_code_becomes_a_typed_exception_with_the_library_message(lib, code):
    with pytest.raises(EClibError) as raised:
        lib.check(code, "BL_Something")
    error = raised.value
    family = {1: GeneralError, 2: InstrumentError, 3: CommunicationError, 4: FirmwareError, 5: TechniqueError}
    assert isinstance(error, family[1 + -code // 100 if code <= -100 else 1])
    assert error.code == code and error.name == eclib.ERRORS[code][0]
    assert error.message == eclib.ERRORS[code][1]  # what the (simulated) BL_GetErrorMsg returned
    assert str(code) in str(error) and "BL_Something" in str(error)


def test_codes_the_driver_acts_on_have_their_own_classes(lib):
    assert isinstance(_raised(lib, -13), ChannelBusy) and isinstance(_raised(lib, -4), InvalidParameters)
    unknown = _raised(lib, -999)
    assert type(unknown) is EClibError and unknown.code == -999 and "-999" in unknown.message
    assert lib.check(0, "BL_Connect") == 0


def _raised(lib, code):
    with pytest.raises(EClibError) as raised:
        lib.check(code, "BL_X")
    return raised.value


def test_calls_before_connecting_raise_not_connected(lib):
    with pytest.raises(GeneralError, match="ERR_GEN_NOTCONNECTED"):
        lib.test_connection(1)


def test_connect_reports_an_sp200_and_firmware_is_needed_before_techniques(lib):
    device_id, info = lib.connect("192.168.0.10")
    assert info.DeviceCode == eclib.DEVICE_SP200
    assert lib.channel_info(device_id, 0).FirmwareCode == eclib.FIRMWARE_NONE
    with pytest.raises(FirmwareError, match="-308"):
        lib.start_channel(device_id, 0)
    assert lib.load_firmware(device_id, [0])[0] == 0
    assert lib.channel_info(device_id, 0).FirmwareCode == eclib.FIRMWARE_KERNEL
    assert lib.board_type(device_id, 0) == eclib.BOARD_PREMIUM
    with pytest.raises(GeneralError, match="ERR_GEN_CHANNELNOTPLUGGED"):
        lib.channel_info(device_id, 3)


def test_a_running_channel_refuses_another_load_and_start(connected):
    lib, device_id = connected
    ecc.load_sequence(lib, device_id, 0, [OCV(60.0)], ecc.Hardware())
    lib.start_channel(device_id, 0)
    with pytest.raises(ChannelBusy):
        lib.start_channel(device_id, 0)
    with pytest.raises(ChannelBusy):
        ecc.load_sequence(lib, device_id, 0, [OCV(60.0)], ecc.Hardware())
    lib.stop_channel(device_id, 0)
    lib.start_channel(device_id, 0)  # the same techniques run again after a stop


def test_starting_with_no_technique_loaded_fails(connected):
    lib, device_id = connected
    with pytest.raises(GeneralError, match="ERR_GEN_FUNCTIONFAILED"):
        lib.start_channel(device_id, 0)


def test_conversion_of_a_word_into_a_single_is_its_ieee_bits(lib):
    word = struct.unpack("<I", struct.pack("<f", -1.25e-4))[0]
    assert lib.to_single(word) == pytest.approx(-1.25e-4, rel=1e-7)
    assert lib.to_single(word, eclib.BOARD_PREMIUM) == lib.to_single(word)


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal is for platforms without the DLL")
def test_the_real_library_is_refused_off_windows_with_the_way_out():
    with pytest.raises(OSError, match="SimEClib"):
        EClib.load("C:/EC-Lab Development Package/EClib64.dll")


@pytest.mark.parametrize("fault, code, connect_code", [
    ("no_reply", -200, -201), ("garbled", -104, -104), ("exception", -101, 0),
])
def test_fault_switches_fail_instrument_calls_with_the_library_codes_while_the_channel_runs_on(
        connected, sim, clock, fault, code, connect_code):
    lib, device_id = connected
    ecc.load_sequence(lib, device_id, 0, [OCV(600.0, 1.0)], ecc.Hardware())
    lib.start_channel(device_id, 0)
    sim.fault = fault
    for call in (lambda: lib.current_values(device_id, 0), lambda: lib.stop_channel(device_id, 0)):
        with pytest.raises(EClibError) as raised:
            call()
        assert raised.value.code == code
    assert lib.to_single(0x3F800000) == 1.0  # the library answers this one by itself
    device, info = ctypes.c_int32(), DeviceInfo()
    assert sim.BL_Connect(b"USB0", 5, ctypes.pointer(device), ctypes.pointer(info)) == connect_code
    clock.advance(300.0)
    sim.fault = None
    assert lib.current_values(device_id, 0).State == eclib.STATE_RUN, "the failed stop did not reach the channel"
    assert sum(len(chunk.words) for chunk in sim.memory) == 300, "it recorded through the fault"


def test_a_dropped_session_answers_not_connected_until_connected_again(connected, sim):
    lib, device_id = connected
    sim.disconnect()
    with pytest.raises(GeneralError, match="ERR_GEN_NOTCONNECTED"):
        lib.current_values(device_id, 0)
    device_id, _ = lib.connect("USB0")
    assert lib.channel_info(device_id, 0).FirmwareCode == eclib.FIRMWARE_KERNEL, "the kernel stays loaded"
