"""The Modbus link through a loopback proxy that resets, stalls, garbles and closes it on a schedule.

The proxy (tests/wire/proxy.py) sits between the driver and the simulated Modbus server
(devices/sim/wire.py), so the faults are real socket events: an RST, a silence, a corrupted frame.
"""

import pytest
from pymodbus.pdu import ExceptionResponse

from devices.chamber.controllers import Eurotherm
from devices.modbus import EXCEPTION_NAMES, ModbusCommunicationError, ModbusDeviceError, ModbusLink, Register
from devices.retry import RetryPolicy
from devices.sim.wire import ModbusChamberServer
from tests.wire.proxy import LinkFaultProxy

ONE_OF_EACH = ["reset", "stall", "garble", "close"]


@pytest.fixture
def link_through(eurotherm_server, sleeps):
    """Return a function giving a chamber link through a proxy with the given schedule."""
    opened = []

    def make(schedule, server=eurotherm_server, **options):
        proxy = LinkFaultProxy(server.port, schedule)
        link = ModbusLink(proxy.address, timeout=0.05, sleep=sleeps.append, name="chamber", **options)
        opened.append((proxy, link))
        return proxy, link

    yield make
    for proxy, link in opened:
        link.close()
        proxy.close()


@pytest.mark.parametrize("fault", ONE_OF_EACH)
def test_one_spoilt_request_is_retried_on_a_fresh_connection(link_through, chamber_sim, sleeps, fault):
    proxy, link = link_through([fault])
    assert Eurotherm(link).read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.05)
    assert proxy.actions == [fault, "pass"] and link.reconnects == 1 and sleeps == [0.05]


def test_a_setpoint_survives_a_reset_link(link_through, chamber_sim):
    """The issue's case: one reset made set() fail although the next request would have worked."""
    proxy, link = link_through(["reset"])
    Eurotherm(link).set_setpoint(313.15)
    assert chamber_sim.setpoint == pytest.approx(313.15) and proxy.actions == ["reset", "pass"]


def test_a_schedule_of_every_fault_is_ridden_out_with_doubling_backoff(link_through, chamber_sim, sleeps):
    proxy, link = link_through(ONE_OF_EACH, attempts=5)
    assert Eurotherm(link).read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.05)
    assert sleeps == [0.05, 0.1, 0.2, 0.4] and link.reconnects == 4


@pytest.mark.parametrize("fault, cause", [("reset", "ConnectionResetError"), ("stall", "No response"),
                                          ("garble", "Unable to decode"), ("close", "Connection unexpectedly closed")])
def test_a_link_that_stays_bad_ends_as_a_typed_error_naming_instrument_address_unit_and_register(
        link_through, sleeps, fault, cause):
    proxy, link = link_through([fault] * 4, device_id=1)
    with pytest.raises(ModbusCommunicationError) as caught:
        Eurotherm(link).read_temperature()
    message = str(caught.value)
    assert message.startswith(f"chamber (Modbus unit 1) at {proxy.address}: no valid reply to the read of "
                              "PV.IN (register 32770) after 4 attempts")
    assert cause in message and message.endswith("check the address, cable and unit id")
    assert sleeps == [0.05, 0.1, 0.2]


def test_a_refused_connection_is_retried_then_reported(sleeps):
    policy = RetryPolicy(attempts=3)
    link = ModbusLink("tcp://127.0.0.1:1", timeout=0.05, attempts=policy.attempts, sleep=sleeps.append, name="chamber")
    with pytest.raises(ModbusCommunicationError, match=r"chamber \(Modbus unit 1\) at tcp://127.0.0.1:1: .*"
                                                       r"after 3 attempts.*Failed to connect"):
        Eurotherm(link).read_temperature()
    assert sleeps == [0.05, 0.1]


@pytest.mark.parametrize("error", [ConnectionResetError(104, "reset"), BrokenPipeError(32, "broken pipe"),
                                   ConnectionRefusedError(111, "refused"), TimeoutError("timed out"),
                                   OSError(113, "no route to host")])
def test_socket_errors_pymodbus_lets_through_are_retried(eurotherm_server, chamber_sim, sleeps, error):
    """pymodbus 3.16 raises these from the socket as they are; the first one must not end the request."""
    link = ModbusLink(eurotherm_server.address, timeout=0.05, sleep=sleeps.append, name="chamber")
    real, failures = link.client.read_holding_registers, [error]

    def first_fails(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    link.client.read_holding_registers = first_fails
    assert Eurotherm(link).read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.05)
    assert link.reconnects == 1 and sleeps == [0.05]
    link.close()


def test_the_unit_id_is_the_one_the_lab_file_gives(chamber_sim, sleeps):
    with ModbusChamberServer(chamber_sim, "eurotherm-3200", device_id=7) as server:
        right = ModbusLink(server.address, device_id=7, timeout=0.05, sleep=sleeps.append, name="chamber")
        wrong = ModbusLink(server.address, device_id=1, timeout=0.05, sleep=sleeps.append, name="chamber")
        assert Eurotherm(right).read_temperature() == pytest.approx(chamber_sim.temperature(), abs=0.05)
        with pytest.raises(ModbusDeviceError, match=r"chamber \(Modbus unit 1\) at .*: refused the read of PV.IN "
                                                    r"\(register 32770\): exception 4 \(server device failure\); "
                                                    r"check the unit id \(unit: in the lab file\)"):
            Eurotherm(wrong).read_temperature()
        right.close()
        wrong.close()


@pytest.mark.parametrize("code", sorted(EXCEPTION_NAMES))
def test_every_exception_code_of_the_specification_is_named(eurotherm_server, sleeps, code):
    link = ModbusLink(eurotherm_server.address, sleep=sleeps.append, name="chamber")
    link.client.read_holding_registers = lambda *args, **kwargs: ExceptionResponse(3, code)
    with pytest.raises(ModbusDeviceError) as caught:
        link.read(Register(0x8002, "float32", name="PV.IN"))
    message = str(caught.value)
    assert f"exception {code} ({EXCEPTION_NAMES[code]})" in message and "not a code" not in message
    if code in (4, 10, 11):  # device failure and the gateway's two: most often a wrong unit id
        assert "check the unit id (unit: in the lab file)" in message
    assert sleeps == [], "a refusal is the device's answer: not retried"
    link.close()


def test_a_code_outside_the_specification_says_so(eurotherm_server):
    link = ModbusLink(eurotherm_server.address, name="chamber")
    link.client.read_holding_registers = lambda *args, **kwargs: ExceptionResponse(3, 9)
    with pytest.raises(ModbusDeviceError, match=r"exception 9 \(not a code the Modbus specification defines\)"):
        link.read(Register(0x8002, "float32", name="PV.IN"))
    link.close()
