"""The binding's constants against the values in BioLogic's kbio examples (devices/biologic/FACTS.md).

The vendor's values are written here as data, transcribed from kbio's ``kbio_types.py`` and
``tech_types.py`` (EC-Lab Development Package); the binding's come from its modules. A change on
either side that breaks agreement fails here, naming the fact.
"""

import ctypes

import pytest

from devices.biologic import ecc, eclib
from devices.biologic.data import LAYOUTS, VMP3, VMP300, width
from devices.biologic.techniques import CA, CALIMIT, CP, CPLIMIT, GEIS, LOOP, OCV, PEIS

# kbio tech_types.TECH_ID
KBIO_TECH_ID = {"OCV": 100, "CA": 101, "CP": 102, "PEIS": 104, "GEIS": 107, "LOOP": 150, "CPLIMIT": 155,
                "CALIMIT": 157}
# kbio kbio_types.I_RANGE (full scale, A) and E_RANGE (+/- V)
KBIO_I_RANGE = {0: 100e-12, 1: 1e-9, 2: 10e-9, 3: 100e-9, 4: 1e-6, 5: 10e-6, 6: 100e-6, 7: 1e-3, 8: 10e-3,
                9: 100e-3, 10: 1.0}
KBIO_I_RANGE_AUTO = 12
KBIO_E_RANGE = {0: 2.5, 1: 5.0, 2: 10.0}
# kbio kbio_types.ERROR: code -> name without the ERR_ prefix
KBIO_ERRORS = {
    -1: "GEN_NOTCONNECTED", -2: "GEN_CONNECTIONINPROGRESS", -3: "GEN_CHANNELNOTPLUGGED", -4: "GEN_INVALIDPARAMETERS",
    -5: "GEN_FILENOTEXISTS", -6: "GEN_FUNCTIONFAILED", -7: "GEN_NOCHANNELSELECTED", -8: "GEN_INVALIDCONF",
    -9: "GEN_ECLAB_LOADED", -10: "GEN_LIBNOTCORRECTLYLOADED", -11: "GEN_USBLIBRARYERROR",
    -12: "GEN_FUNCTIONINPROGRESS", -13: "GEN_CHANNEL_RUNNING", -14: "GEN_DEVICE_NOTALLOWED",
    -15: "GEN_UPDATEPARAMETERS", -101: "INSTR_VMEERROR", -102: "INSTR_TOOMANYDATA", -103: "INSTR_RESPNOTPOSSIBLE",
    -104: "INSTR_RESPERROR", -105: "INSTR_MSGSIZEERROR", -200: "COMM_COMMFAILED", -201: "COMM_CONNECTIONFAILED",
    -202: "COMM_WAITINGACK", -203: "COMM_INVALIDIPADDRESS", -204: "COMM_ALLOCMEMFAILED",
    -205: "COMM_LOADFIRMWAREFAILED", -206: "COMM_INCOMPATIBLESERVER", -207: "COMM_MAXCONNREACHED",
    -300: "FIRM_FIRMFILENOTEXISTS", -301: "FIRM_FIRMFILEACCESSFAILED", -302: "FIRM_FIRMINVALIDFILE",
    -303: "FIRM_FIRMLOADINGFAILED", -304: "FIRM_XILFILENOTEXISTS", -305: "FIRM_XILFILEACCESSFAILED",
    -306: "FIRM_XILINVALIDFILE", -307: "FIRM_XILLOADINGFAILED", -308: "FIRM_FIRMWARENOTLOADED",
    -309: "FIRM_FIRMWAREINCOMPATIBLE", -400: "TECH_ECCFILENOTEXISTS", -401: "TECH_INCOMPATIBLEECC",
    -402: "TECH_ECCFILECORRUPTED", -403: "TECH_LOADTECHNIQUEFAILED", -404: "TECH_DATACORRUPTED",
    -405: "TECH_MEMFULL",
}
# kbio kbio_types: structure fields in order (names compared case-insensitively: RAMSize/RAMsize, Lcboard/LCboard)
KBIO_CHANNEL_INFO = ["Channel", "BoardVersion", "BoardSerialNumber", "FirmwareCode", "FirmwareVersion",
                     "XilinxVersion", "AmpCode", "NbAmps", "Lcboard", "Zboard", "MUXboard", "GPRAboard", "MemSize",
                     "MemFilled", "State", "MaxIRange", "MinIRange", "MaxBandwidth", "NbOfTechniques"]
KBIO_CURRENT_VALUES = ["State", "MemFilled", "TimeBase", "Ewe", "EweRangeMin", "EweRangeMax", "Ece", "EceRangeMin",
                       "EceRangeMax", "Eoverflow", "I", "IRange", "Ioverflow", "ElapsedTime", "Freq", "Rcomp",
                       "Saturation", "OptErr", "OptPos"]
KBIO_DATA_INFO = ["IRQskipped", "NbRows", "NbCols", "TechniqueIndex", "TechniqueID", "ProcessIndex", "loop",
                  "StartTime", "MuxPad"]
KBIO_DEVICE_INFO = ["DeviceCode", "RAMSize", "CPU", "NumberOfChannels", "NumberOfSlots", "FirmwareVersion",
                    "FirmwareDate_yyyy", "FirmwareDate_mm", "FirmwareDate_dd", "HTdisplayOn", "NbOfConnectedPC"]
# words per record: kbio get_experiment_data (OCV, CP), easy-biologic data_parser (the rest)
RECORD_WORDS = {(VMP300, 100, 0): 3, (VMP3, 100, 0): 4, (VMP300, 102, 0): 5, (VMP3, 102, 0): 5,
                (VMP300, 101, 0): 5, (VMP300, 155, 0): 5, (VMP300, 157, 0): 5, (VMP300, 104, 0): 4,
                (VMP300, 107, 0): 4, (VMP300, 104, 1): 14, (VMP300, 107, 1): 14, (VMP3, 104, 1): 15}
STEMS = {OCV: "OCV", CA: "CA", CP: "CP", CPLIMIT: "CPLIMIT", CALIMIT: "CALIMIT", PEIS: "PEIS", GEIS: "GEIS",
         LOOP: "LOOP"}


@pytest.mark.parametrize("technique", list(STEMS), ids=lambda t: t.__name__)
def test_technique_ids_are_kbios(technique):
    assert ecc.TECHNIQUE_IDS[ecc.ECC_STEMS[technique]] == KBIO_TECH_ID[STEMS[technique]]


def test_ecc_files_per_board_are_kbios():
    # kbio examples: ocv.ecc (ESSENTIAL 1), ocv4.ecc (PREMIUM 2), ocv5.ecc (DIGICORE 3)
    assert [ecc.BOARD_SUFFIX[b] for b in (1, 2, 3)] == ["", "4", "5"]
    assert (eclib.BOARD_ESSENTIAL, eclib.BOARD_PREMIUM, eclib.BOARD_PREMIUM_P) == (1, 2, 3)


def test_ranges_are_kbios():
    assert ecc.I_RANGES == KBIO_I_RANGE and ecc.I_RANGE_AUTO == KBIO_I_RANGE_AUTO
    assert ecc.E_RANGES == KBIO_E_RANGE


def test_error_codes_are_kbios():
    assert {code: name.removeprefix("ERR_") for code, (name, _) in eclib.ERRORS.items()} == KBIO_ERRORS


@pytest.mark.parametrize("structure, fields", [(eclib.ChannelInfo, KBIO_CHANNEL_INFO),
                                               (eclib.CurrentValues, KBIO_CURRENT_VALUES),
                                               (eclib.DataInfo, KBIO_DATA_INFO),
                                               (eclib.DeviceInfo, KBIO_DEVICE_INFO)],
                         ids=lambda x: getattr(x, "__name__", ""))
def test_structures_have_kbios_fields_in_kbios_order(structure, fields):
    assert [name.lower() for name, _ in structure._fields_] == [name.lower() for name in fields]


def test_data_info_start_time_is_a_double_packed_on_four_bytes():
    assert dict(eclib.DataInfo._fields_)["StartTime"] is ctypes.c_double and eclib.DataInfo._pack_ == 4


def test_codes_the_backend_compares_are_kbios():
    # kbio: DEVICE.SP200 21, SP300 16; FIRMWARE.KERNEL 5; PROG_STATE 0/1/2; PARAM_TYPE 0/1/2; DataBuffer 1000 words
    assert (eclib.DEVICE_SP200, eclib.DEVICE_SP300, eclib.FIRMWARE_KERNEL) == (21, 16, 5)
    assert (eclib.STATE_STOP, eclib.STATE_RUN, eclib.STATE_PAUSE) == (0, 1, 2)
    assert (eclib.PARAM_INT32, eclib.PARAM_BOOLEAN, eclib.PARAM_SINGLE) == (0, 1, 2)
    assert ctypes.sizeof(eclib.DataBuffer) == 1000 * 4


@pytest.mark.parametrize("key", list(RECORD_WORDS), ids=str)
def test_record_widths_are_the_examples(key):
    assert width(LAYOUTS[key]) == RECORD_WORDS[key]
