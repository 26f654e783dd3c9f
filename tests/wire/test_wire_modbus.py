"""The Modbus layer and the chamber controllers, asserted at the register level against the wire simulator."""

import struct

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.framer import FramerType

from devices.chamber.controllers import Eurotherm, make_controller
from devices.modbus import ModbusCommunicationError, ModbusDeviceError, ModbusLink, Register
from devices.sim.wire import ModbusChamberServer


def raw_words(server, address, count=2):
    """Read holding registers with a bare pymodbus client: what is on the wire, undecoded."""
    framer = FramerType.SOCKET if server.framing == "tcp" else FramerType.RTU
    client = ModbusTcpClient("127.0.0.1", port=server.port, framer=framer, timeout=1.0)
    try:
        return client.read_holding_registers(address, count=count, device_id=1).registers
    finally:
        client.close()


def float_words(value, word_order="big"):
    words = list(struct.unpack(">2H", struct.pack(">f", value)))
    return words if word_order == "big" else words[::-1]


def celsius(chamber_sim):
    return chamber_sim.temperature() - 273.15


def words_float(words, word_order="big"):
    words = list(words) if word_order == "big" else list(words)[::-1]
    return struct.unpack(">f", struct.pack(">2H", *words))[0]


# -- Register encoding ----------------------------------------------------------------------


def test_float32_words_in_both_word_orders():
    assert Register(0, "float32").encode(30.0) == [0x41F0, 0x0000]
    assert Register(0, "float32", word_order="little").encode(30.0) == [0x0000, 0x41F0]
    assert Register(0, "float32", word_order="little").decode([0x0000, 0x41F0]) == 30.0


def test_scaled_integers_carry_implied_decimals():
    one_decimal = Register(1, "int16", scale=0.1)
    assert one_decimal.encode(25.3) == [253]
    assert one_decimal.encode(-5.0) == [0xFFCE]  # two's complement on the wire
    assert one_decimal.decode([0xFFCE]) == pytest.approx(-5.0)
    with pytest.raises(ValueError, match="does not fit a int16"):
        one_decimal.encode(4000.0)


def test_writes_are_validated_before_they_are_sent():
    with pytest.raises(ValueError, match="read-only"):
        Register(1).check(1.0)
    with pytest.raises(ValueError, match="outside -40 to 200"):
        Register(2, writable=True, limits=(-40.0, 200.0)).check(250.0)


# -- Register maps on the wire ----------------------------------------------------------------


def test_eurotherm_setpoint_lands_in_both_regions(eurotherm_server, chamber_sim):
    controller = make_controller("eurotherm-3200", ModbusLink(eurotherm_server.address))
    controller.set_setpoint(303.15)
    assert chamber_sim.setpoint == pytest.approx(303.15)
    assert raw_words(eurotherm_server, 0x8000 + 2 * 2) == float_words(30.0)  # IEEE region, high word first
    integers = Eurotherm(ModbusLink(eurotherm_server.address), float_region=False, decimals=1)
    assert raw_words(eurotherm_server, 2, count=1) == [300]  # 30.0 degC with one implied decimal
    assert integers.setpoint == pytest.approx(303.15)
    controller.close(), integers.close()


def test_eurotherm_readbacks_follow_the_chamber(eurotherm_server, chamber_sim, clock):
    controller = Eurotherm(ModbusLink(eurotherm_server.address))
    controller.set_setpoint(303.15)
    clock.advance(60.0)  # the working setpoint ramps at 3 K/min
    assert controller.working_setpoint == pytest.approx(28.0, abs=1e-4)
    assert words_float(raw_words(eurotherm_server, 0x8000 + 2 * 5)) == pytest.approx(28.0, abs=1e-4)  # WKG.SP
    assert controller.status & (1 << 13), "bit 13 says the setpoint is ramping"
    assert raw_words(eurotherm_server, 75, count=1)[0] & (1 << 13)  # StAt, integer region only
    assert controller.output > 0
    assert words_float(raw_words(eurotherm_server, 0x8000 + 2 * 4)) > 0  # WRK.OP at 4 (3 is MAN.OP)
    assert controller.read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.3)
    clock.advance(3600.0)
    assert controller.status == 0
    controller.close()


def test_eurotherm_rate_limit_slows_the_ramp(eurotherm_server, chamber_sim, clock):
    controller = Eurotherm(ModbusLink(eurotherm_server.address))
    controller.ramp_rate = 1.0 / 60.0  # 1 K/min
    assert raw_words(eurotherm_server, 0x8000 + 2 * 35) == float_words(1.0)  # degC/min on the wire
    assert controller.ramp_rate == pytest.approx(1.0 / 60.0)
    controller.set_setpoint(303.15)
    clock.advance(60.0)
    assert chamber_sim.working_setpoint() == pytest.approx(299.15)
    controller.close()


def test_watlow_f4t_loops_and_low_word_first(chamber_sim):
    with ModbusChamberServer(chamber_sim, "watlow-f4t", loop=2) as server:
        controller = make_controller("watlow-f4t", ModbusLink(server.address), loop=2)
        controller.set_setpoint(308.15)
        assert raw_words(server, 2782 + 160) == float_words(35.0, "little")
        assert words_float(raw_words(server, 2810 + 160), "little") == pytest.approx(controller.working_setpoint)
        assert words_float(raw_words(server, 2820 + 160), "little") == pytest.approx(celsius(chamber_sim), abs=0.3)
        assert controller.setpoint == pytest.approx(308.15, abs=1e-5)
        assert controller.ramp_rate is None
        with pytest.raises(ValueError, match="no setpoint-rate register"):
            controller.ramp_rate = 0.01
        controller.close()


def test_binder_over_rtu_framing(chamber_sim):
    with ModbusChamberServer(chamber_sim, "binder-mb1", framing="rtu") as server:
        assert server.address.startswith("rtu:socket://")
        controller = make_controller("binder-mb1", ModbusLink(server.address))
        controller.set_setpoint(313.15)
        assert raw_words(server, 0x1581) == float_words(40.0, "little")  # set point 1 manual
        assert words_float(raw_words(server, 0x11A9), "little") == pytest.approx(celsius(chamber_sim), abs=0.3)
        assert words_float(raw_words(server, 0x1077), "little") == pytest.approx(controller.working_setpoint)
        assert controller.read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.3)
        assert controller.ramp_rate is None
        controller.close()


def test_binder_mb2_has_its_own_map(chamber_sim):
    with ModbusChamberServer(chamber_sim, "binder-mb2", framing="rtu") as server:
        controller = make_controller("binder-mb2", ModbusLink(server.address))
        controller.set_setpoint(313.15)
        assert chamber_sim.setpoint == pytest.approx(313.15)
        assert raw_words(server, 0x114C) == float_words(40.0, "little")  # manual setpoint
        assert words_float(raw_words(server, 0x1004), "little") == pytest.approx(celsius(chamber_sim), abs=0.3)
        assert words_float(raw_words(server, 0x10B2), "little") == pytest.approx(controller.working_setpoint)
        assert controller.read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.3)
        with pytest.raises(ModbusDeviceError, match="illegal data address"):
            controller.link.read(Register(0x1581, "float32", word_order="little"))  # MB1's address: not an MB2's
        controller.close()


def test_unknown_controller_is_named():
    with pytest.raises(ValueError, match="unknown chamber controller 'eurotherm-9000'"):
        make_controller("eurotherm-9000", None)


# -- Refusals and faults --------------------------------------------------------------------


def test_device_refusals_are_modbus_exceptions_not_retried(eurotherm_server, sleeps):
    link = ModbusLink(eurotherm_server.address, sleep=sleeps.append)
    with pytest.raises(ModbusDeviceError, match="illegal data address"):
        link.write(Register(0x8000 + 2, "float32", writable=True), 20.0)  # the PV is read-only
    with pytest.raises(ModbusDeviceError, match="illegal data value"):
        link.write(Register(0x8000 + 4, "float32", writable=True), 500.0)  # above the rated range
    assert sleeps == []
    link.close()


def test_exception_fault(eurotherm_server, sleeps):
    link = ModbusLink(eurotherm_server.address, sleep=sleeps.append)
    eurotherm_server.fault = "exception"
    before = eurotherm_server.requests
    with pytest.raises(ModbusDeviceError, match=r"at tcp://127\.0\.0\.1:\d+: refused the read of PV.IN \(register 32770\): exception 4 \(server device failure\); check the unit id"):
        Eurotherm(link).read_temperature()
    assert eurotherm_server.requests == before + 1 and sleeps == []
    link.close()


@pytest.mark.parametrize("fault", ["no_reply", "garbled"])
def test_no_valid_reply_is_retried_with_backoff_then_reported_with_the_address(eurotherm_server, sleeps, fault):
    link = ModbusLink(eurotherm_server.address, timeout=0.05, attempts=4, sleep=sleeps.append)
    eurotherm_server.fault = fault
    with pytest.raises(ModbusCommunicationError, match=f"at {eurotherm_server.address}: no valid reply"):
        Eurotherm(link).read_temperature()
    assert sleeps == [0.05, 0.1, 0.2]
    eurotherm_server.fault = None
    assert Eurotherm(link).read_temperature() == pytest.approx(298.15, abs=0.5)
    link.close()


def test_disconnect_and_reconnect(eurotherm_server, sleeps):
    controller = Eurotherm(ModbusLink(eurotherm_server.address, sleep=sleeps.append))
    controller.read_temperature()
    eurotherm_server.disconnect()
    assert controller.read_temperature() == pytest.approx(298.15, abs=0.5)
    assert controller.link.reconnects == 1 and sleeps == [0.05]
    controller.close()


def test_a_server_that_is_gone_is_reported(chamber_sim, sleeps):
    server = ModbusChamberServer(chamber_sim, "eurotherm-3200")
    address = server.address
    server.close()
    link = ModbusLink(address, timeout=0.05, attempts=2, sleep=sleeps.append)
    with pytest.raises(ModbusCommunicationError, match=f"at {address}: no valid reply"):
        link.read(Register(1))
    link.close()
