"""The rig's line protocol: exact exchanges (pymeasure's expected_protocol), firmware replies, faults."""

import pytest
from pymeasure.test import expected_protocol

from devices.rig.protocol import RigBackend, RigController, RigProtocolError, RigRefused
from devices.sim.wire import RigFirmware, RigLineServer


def test_force_reading_in_newtons_and_other_units():
    with expected_protocol(RigController, [("?", "392.5120 N"), ("?", "-1.5 lbF"), ("?", "2 kgF")]) as rig:
        assert rig.force == pytest.approx(392.512)
        assert rig.force == pytest.approx(-1.5 * 4.4482216152605)
        assert rig.force == pytest.approx(2 * 9.80665)


def test_crosshead_position_in_metres():
    with expected_protocol(RigController, [("X?", "-0.100000 mm")]) as rig:
        assert rig.position == pytest.approx(-1e-4)


def test_target_and_hold_commands_are_acknowledged():
    exchanges = [("T 392.5000", "OK"), ("T?", "392.5000 N"), ("H1", "OK"), ("H?", "1"), ("H0", "OK"), ("R", "OK")]
    with expected_protocol(RigController, exchanges) as rig:
        rig.target_force = 392.5
        assert rig.target_force == pytest.approx(392.5)
        rig.holding = True
        assert rig.holding is True
        rig.holding = False
        rig.release()


def test_out_of_range_target_is_refused_before_sending():
    with expected_protocol(RigController, []) as rig:
        with pytest.raises(ValueError):
            rig.target_force = 6000.0


def test_error_codes_and_garbage_raise():
    with expected_protocol(RigController, [("T 100.0000", "*11"), ("?", "*10"), ("?", "3#2.1 N"), ("?", "")]) as rig:
        with pytest.raises(RigRefused, match=r"\*11 \(value out of range\)"):
            rig.target_force = 100.0
        with pytest.raises(RigRefused, match="illegal command"):
            rig.force
        with pytest.raises(RigProtocolError, match="unexpected reply"):
            rig.force
        with pytest.raises(RigProtocolError, match="no reply"):
            rig.force


def test_firmware_replies(rig_sim):
    firmware = RigFirmware(rig_sim)
    area = rig_sim.params.area
    assert firmware.reply("T 392.5") == "OK" and rig_sim.target == pytest.approx(392.5 / area)
    assert firmware.reply("T?") == "392.5000 N"
    assert firmware.reply("H?") == "0"
    assert firmware.reply("H1") == "OK" and rig_sim.holding
    assert firmware.reply("X?") == "-0.100000 mm"  # the crosshead starts 100 um clear of the stack
    assert firmware.reply("T 99999") == "*11"  # beyond the rig's max pressure
    assert firmware.reply("T abc") == "*11"
    assert firmware.reply("MOVE") == "*10"
    assert firmware.reply("R") == "OK" and not rig_sim.holding


def test_backend_over_the_line_server(rig_server, rig_sim, clock, sleeps):
    backend = RigBackend(rig_server.address, area=rig_sim.params.area, sleep=sleeps.append)
    backend.set_target(5e6)
    backend.hold(True)
    clock.advance(600.0)
    assert backend.read_pressure() == pytest.approx(5e6, rel=0.01)
    assert backend.crosshead_position() == pytest.approx(rig_sim.crosshead_position(), abs=1e-9)
    assert rig_server.commands[:2] == ["T 392.5000", "H1"]
    backend.close()


@pytest.mark.parametrize("fault", ["no_reply", "garbled"])
def test_no_valid_reply_is_retried_then_reported_with_the_address(rig_server, rig_sim, sleeps, fault):
    backend = RigBackend(rig_server.address, area=rig_sim.params.area, timeout=0.05, attempts=3, sleep=sleeps.append)
    rig_server.fault = fault
    with pytest.raises(ConnectionError, match=f"rig controller at {rig_server.address}: no valid force reading"):
        backend.read_force()
    assert sleeps == [0.05, 0.1] and rig_server.commands == ["?"] * 3
    backend.close()


def test_refusal_is_not_retried(rig_server, rig_sim, sleeps):
    backend = RigBackend(rig_server.address, area=rig_sim.params.area, sleep=sleeps.append)
    rig_server.fault = "exception"
    with pytest.raises(RigRefused, match=f"rig controller at {rig_server.address}, force reading"):
        backend.read_force()
    assert sleeps == [] and rig_server.commands == ["?"]
    backend.close()


def test_disconnect_and_reconnect(rig_server, rig_sim, sleeps):
    backend = RigBackend(rig_server.address, area=rig_sim.params.area, sleep=sleeps.append)
    backend.read_force()
    rig_server.disconnect()
    assert backend.read_force() == pytest.approx(0.0, abs=1.0)
    assert backend.reconnects == 1 and sleeps == [0.05]
    backend.close()


def test_a_line_that_is_gone_is_reported(rig_sim):
    server = RigLineServer(rig_sim)
    address = server.address
    server.close()
    with pytest.raises(ConnectionError, match=f"rig controller at {address}: cannot open the line"):
        RigBackend(address, area=rig_sim.params.area)
