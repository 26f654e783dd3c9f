"""Read latency on loopback, per protocol: through the ophyd device, and the bare client beside it.

Each figure is the median of ``READS`` reads against the wire simulators in this process (the
server threads share the interpreter with the client, so this is an upper bound on what a real
controller's network adds). Rows:

* Modbus TCP (Eurotherm float region, one float32 = 2 registers):
  ``TemperatureChamber.temperature.get()``, ``Eurotherm.read_temperature()``, and pymodbus's
  ``ModbusTcpClient.read_holding_registers`` alone. Target: <= 0.2 ms through the device.
* Modbus RTU framing over a socket (Binder): device, and pymodbus alone.
* The rig's line protocol over ``socket://``: ``StackPressureRig.force.get()``, and a bare pyserial
  write/read_until of ``?``.

Run with ``python tests/benchmarks/bench_wire.py`` or
``python -m pytest -m benchmark -s tests/benchmarks/bench_wire.py``.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pytest
import serial
from pymodbus.client import ModbusTcpClient
from pymodbus.framer import FramerType

from devices.chamber.controllers import make_controller
from devices.chamber.device import TemperatureChamber
from devices.modbus import ModbusLink
from devices.rig.device import StackPressureRig
from devices.rig.protocol import RigBackend, close_port
from devices.sim.chamber import SimChamber
from devices.sim.rig import SimRig
from devices.sim.wire import ModbusChamberServer, RigLineServer
from labctl.core.clock import VirtualClock

READS = 2000
TARGET_MODBUS_DEVICE_MS = 0.2


def median_ms(read, n: int = READS) -> float:
    """Return the median wall time of ``read()`` over ``n`` calls, ms (after 50 warm-up calls)."""
    for _ in range(50):
        read()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def modbus_rows(clock, sim, kind: str, framing: str) -> list[tuple[str, float]]:
    with ModbusChamberServer(sim, kind, framing=framing) as server:
        backend = make_controller(kind, ModbusLink(server.address))
        chamber = TemperatureChamber(backend=backend, clock=clock, name="chamber")
        spec = backend.registers["process_value"]
        framer = FramerType.SOCKET if framing == "tcp" else FramerType.RTU
        bare = ModbusTcpClient("127.0.0.1", port=server.port, framer=framer, timeout=1.0)
        bare.connect()
        rows = [
            (f"{kind} ({framing}) through TemperatureChamber", median_ms(chamber.temperature.get)),
            (f"{kind} ({framing}) driver read_temperature()", median_ms(backend.read_temperature)),
            (f"{kind} ({framing}) pymodbus alone", median_ms(
                lambda: bare.read_holding_registers(spec.address, count=spec.count, device_id=1))),
        ]
        bare.close()
        backend.close()
    return rows


def rig_rows(clock, sim) -> list[tuple[str, float]]:
    with RigLineServer(sim) as server:
        backend = RigBackend(server.address, area=sim.params.area)
        rig = StackPressureRig(backend=backend, clock=clock, name="rig")
        bare = serial.serial_for_url(server.address, timeout=1.0)

        def bare_read():
            bare.write(b"?\r")
            bare.read_until(b"\r\n")

        rows = [
            ("rig line protocol through StackPressureRig", median_ms(rig.force.get)),
            ("rig line protocol, pyserial alone", median_ms(bare_read)),
        ]
        close_port({"port": bare})
        backend.close()
    return rows


def measure() -> list[tuple[str, float]]:
    clock = VirtualClock(start=0.0)
    rng = np.random.default_rng(0)
    chamber_sim = SimChamber(clock, rng=rng)
    rig_sim = SimRig(clock, chamber_sim.history_or_now(chamber_sim.temperature), rng=rng)
    return [*modbus_rows(clock, chamber_sim, "eurotherm-3200", "tcp"),
            *modbus_rows(clock, chamber_sim, "binder-mb1", "rtu"),
            *rig_rows(clock, rig_sim)]


def report(rows) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {ms:7.3f} ms" for name, ms in rows)


@pytest.mark.benchmark
@pytest.mark.timeout(900)
def test_read_latency_on_loopback():
    rows = measure()
    print("\nmedian read latency on loopback\n" + report(rows))
    device_ms = rows[0][1]
    assert device_ms <= TARGET_MODBUS_DEVICE_MS, (
        f"a Modbus read through the device takes {device_ms:.3f} ms, target {TARGET_MODBUS_DEVICE_MS} ms")


if __name__ == "__main__":
    print(report(measure()))
    sys.exit(0)
