"""The chamber and rig simulators at the wire: a Modbus server and a line server on loopback.

``ModbusChamberServer`` is a pymodbus server on 127.0.0.1 answering a controller's register map
(Eurotherm, Watlow F4T, Binder; see ``devices.chamber.controllers``) from a ``SimChamber``: a read
of the process value is a reading of the simulated sensor, a write of the setpoint sets the
simulated setpoint. ``RigLineServer`` is a TCP line server on 127.0.0.1, reached with pyserial
``socket://`` URLs, running the rig firmware (``devices.rig.protocol``) over a ``SimRig``. Both
compute every reply at the session clock's current time, so they stay on the virtual clock.

Fault switches, set ``server.fault`` to one of ``FAULTS`` (None for none): ``no_reply`` swallows
replies, ``garbled`` corrupts them, ``exception`` answers with a Modbus exception (device failure)
or the line protocol's ``*10``; ``disconnect()`` drops every client connection (clients reconnect).

Servers run in a background thread each; ``close()`` (or leaving the ``with`` block) stops the
thread and closes every socket.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.chamber.controllers import CELSIUS_ZERO, Eurotherm, controller_class, eurotherm_registers, register_map
from devices.modbus import Register
from devices.sim.chamber import SimChamber
from devices.sim.rig import SimRig

FAULTS = (None, "no_reply", "garbled", "exception")
HOST = "127.0.0.1"
WAIT = 5.0  # s: longest a caller waits for the server thread to start, stop or drop connections


def served_registers(kind: str, **options) -> list[tuple[str, Register]]:
    """Return every (role, register) a controller ``kind`` answers: a Eurotherm serves both regions."""
    if controller_class(kind) is not Eurotherm:
        return list(register_map(kind, **options).items())
    pairs = [*eurotherm_registers(float_region=True).items(), *register_map(kind, float_region=False, **options).items()]
    unique = {spec.address: (role, spec) for role, spec in pairs}  # the status word is in both maps
    return list(unique.values())


class ChamberRegisters:
    """A controller's register map answered from a ``SimChamber``, in the controller's degC.

    Parameters
    ----------
    sim : SimChamber
        The chamber physics.
    registers : list of (str, Register)
        The registers the controller answers, by role (see :func:`served_registers`).
    """

    # Eurotherm status bit 13: the working setpoint is still ramping.
    RAMPING = 1 << 13

    def __init__(self, sim: SimChamber, registers: list[tuple[str, Register]]):
        self.sim = sim
        self.registers = registers
        self.hardware_ramp = sim.params.max_ramp_rate  # K/s the chamber can do; a rate limit only lowers it
        self.rate_limit = 0.0  # degC/min as the controller holds it, 0 = off

    def value(self, role: str) -> float:
        """Return the value of ``role`` now, in the controller's units."""
        sim = self.sim
        if role == "process_value":
            return sim.read_temperature() - CELSIUS_ZERO
        if role == "target_setpoint":
            return sim.setpoint - CELSIUS_ZERO
        if role == "working_setpoint":
            return sim.working_setpoint() - CELSIUS_ZERO
        if role == "output":
            # The physics has no heater power; show what a proportional band of 10 K would drive.
            return max(-100.0, min(100.0, 10.0 * (sim.working_setpoint() - sim.temperature())))
        if role == "rate_limit":
            return self.rate_limit
        if role == "status":
            return self.RAMPING if sim.working_setpoint() != sim.setpoint else 0
        raise KeyError(role)

    def write(self, role: str, value: float) -> None:
        """Apply a write of ``value`` to ``role``; ``ValueError`` if the controller would refuse it."""
        if role == "target_setpoint":
            # Rounded: -40.0 degC + 273.15 is 233.14999999999998 K, an ulp below the rated range.
            self.sim.set_setpoint(round(value + CELSIUS_ZERO, 6))
        elif role == "rate_limit":
            self._set_rate_limit(value)
        else:
            raise ValueError(f"{role} is read-only")

    def _set_rate_limit(self, per_minute: float) -> None:
        if per_minute < 0:
            raise ValueError("a rate limit cannot be negative")
        rate = self.hardware_ramp if per_minute == 0 else min(per_minute / 60.0, self.hardware_ramp)
        self.sim.temperature()  # integrate the past at the old rate before the new one applies
        self.sim.params = self.sim.params.model_copy(update={"max_ramp_rate": rate})
        self.rate_limit = per_minute

    def simdata(self) -> list[SimData]:
        """Return the pymodbus register blocks: one per register, read-only unless writable."""
        return [SimData(spec.address, count=spec.count, datatype=DataType.REGISTERS, readonly=not spec.writable)
                for _, spec in self.registers]

    def read_words(self, start: int, address: int, count: int, words: list[int]) -> None:
        """Fill ``words`` (the block from ``start``) for a read of ``count`` registers at ``address``."""
        for role, spec in self.registers:
            if spec.address < address + count and address < spec.address + spec.count:
                offset = spec.address - start
                words[offset:offset + spec.count] = spec.encode(self.value(role))

    def write_words(self, address: int, values: list[int]) -> ExcCodes | None:
        """Apply a write of ``values`` at ``address``; return the exception code to answer, if any."""
        end = address + len(values)
        for role, spec in self.registers:
            if address <= spec.address and spec.address + spec.count <= end:
                offset = spec.address - address
                try:
                    self.write(role, spec.decode(values[offset:offset + spec.count]))
                except ValueError:
                    return ExcCodes.ILLEGAL_VALUE
            elif spec.address < end and address < spec.address + spec.count:
                return ExcCodes.ILLEGAL_ADDRESS  # half of a two-register value
        return None


class _LoopThread:
    """An asyncio event loop in a background thread, for pymodbus's asyncio server."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine):
        """Run ``coroutine`` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT)

    def stop(self) -> None:
        """Stop the loop, join the thread and close the loop."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class ModbusChamberServer:
    """A chamber controller on loopback: a pymodbus server whose registers are the chamber physics.

    Parameters
    ----------
    sim : SimChamber
        The chamber physics.
    kind : str
        Controller kind, e.g. ``eurotherm-3200``, ``watlow-f4t``, ``binder-mb1``.
    framing : str
        ``tcp`` (Modbus TCP) or ``rtu`` (RTU frames over the socket, as serial gateways and Binder's
        Ethernet port do).
    device_id : int
        The unit id it answers to (others get no reply, like a bus without that unit).
    **options
        Register-map options of the controller (``decimals``, ``loop``).
    """

    def __init__(self, sim: SimChamber, kind: str, *, framing: str = "tcp", device_id: int = 1, **options):
        if framing not in ("tcp", "rtu"):
            raise ValueError(f"framing must be 'tcp' or 'rtu', got {framing!r}")
        self.kind, self.framing, self.device_id = kind, framing, device_id
        self.registers = ChamberRegisters(sim, served_registers(kind, **options))
        self.fault: str | None = None
        self.requests = 0  # requests answered or refused, for tests
        self._thread = _LoopThread(f"modbus-{kind}")
        try:
            self._server = self._thread.run(self._start())
            # pymodbus keeps its listening asyncio.Server in ``transport`` (typed as a transport)
            listener = self._server.transport
            if not isinstance(listener, asyncio.Server):
                raise RuntimeError(f"pymodbus's Modbus server has no listening socket (got {listener!r})")
            self.port = listener.sockets[0].getsockname()[1]
        except BaseException:
            self._thread.stop()
            raise

    @property
    def address(self) -> str:
        """Get the URL a ``ModbusLink`` connects to."""
        return f"tcp://{HOST}:{self.port}" if self.framing == "tcp" else f"rtu:socket://{HOST}:{self.port}"

    async def _start(self) -> ModbusTcpServer:
        device = SimDevice(self.device_id, simdata=self.registers.simdata(), action=self._action)
        framer = FramerType.SOCKET if self.framing == "tcp" else FramerType.RTU
        server = ModbusTcpServer(device, framer=framer, address=(HOST, 0), trace_packet=self._trace_packet,
                                 ignore_missing_devices=True)
        await server.serve_forever(background=True)
        return server

    async def _action(self, function_code, start, address, count, words, values):
        """pymodbus's hook on every register access: answer from (or apply to) the physics."""
        self.requests += 1
        if self.fault == "exception":
            return ExcCodes.DEVICE_FAILURE
        if values is None:
            self.registers.read_words(start, address, count, words)
            return None
        return self.registers.write_words(address, list(values))

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending or self.fault not in ("no_reply", "garbled"):
            return packet
        if self.fault == "no_reply":
            return b""
        # Flip the byte that a reader checks first: the RTU CRC's last byte, the MBAP protocol id.
        index = len(packet) - 1 if self.framing == "rtu" else 2
        return packet[:index] + bytes([packet[index] ^ 0x5A]) + packet[index + 1:]

    def disconnect(self) -> None:
        """Drop every client connection now; the listener stays up, so clients can reconnect."""

        async def drop():
            for connection in list(self._server.active_connections.values()):
                connection.close()

        self._thread.run(drop())

    def close(self) -> None:
        """Stop the server: close its connections and listener, then its thread."""
        self._thread.run(self._server.shutdown())
        self._thread.stop()

    def __enter__(self) -> "ModbusChamberServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RigFirmware:
    """The rig controller's firmware over a ``SimRig``: one command line in, one reply out.

    The command set is documented in ``devices.rig.protocol``. The hold loop is ``SimRig``'s own
    (it runs on the virtual clock inside the simulator), as it runs in the real controller.

    Parameters
    ----------
    sim : SimRig
        The rig physics; its ``params.area`` converts the force target to the pressure it holds.
    """

    def __init__(self, sim: SimRig):
        self.sim = sim

    def reply(self, command: str) -> str:
        """Return the reply to ``command`` (without terminator)."""
        sim, area = self.sim, self.sim.params.area
        queries = {
            "?": lambda: f"{sim.read_force():.4f} N",
            "X?": lambda: f"{sim.crosshead_position() * 1e3:.6f} mm",
            "T?": lambda: f"{sim.target * area:.4f} N",
            "H?": lambda: "1" if sim.holding else "0",
            "H1": lambda: self._ok(sim.hold, True),
            "H0": lambda: self._ok(sim.hold, False),
            "R": lambda: self._ok(sim.release),
        }
        if command in queries:
            return queries[command]()
        if command.startswith("T "):
            try:
                newtons = float(command[2:])
                return self._ok(sim.set_target, newtons / area)
            except ValueError:
                return "*11"
        return "*10"

    @staticmethod
    def _ok(action, *args) -> str:
        action(*args)
        return "OK"


class RigLineServer:
    """The rig controller on loopback: a TCP line server (``socket://`` URL) running ``RigFirmware``.

    Parameters
    ----------
    sim : SimRig
        The rig physics.
    """

    def __init__(self, sim: SimRig):
        self.firmware = RigFirmware(sim)
        self.fault: str | None = None
        self.commands: list[str] = []  # every command received, for tests
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._buffers: dict[socket.socket, bytes] = {}
        self._requests: list[str] = []  # "disconnect" or "stop", handled on the server thread
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rig-line-server", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """Get the pyserial URL of the line."""
        return f"socket://{HOST}:{self.port}"

    def disconnect(self) -> None:
        """Drop every client connection now (the listener stays up)."""
        self._ask("disconnect")

    def close(self) -> None:
        """Stop the thread and close every socket."""
        if self._thread.is_alive():
            self._ask("stop")
            self._thread.join(WAIT)
        for sock in (self._listener, self._wake_read, self._wake_write):
            sock.close()
        self._selector.close()

    def __enter__(self) -> "RigLineServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ask(self, request: str) -> None:
        """Have the server thread do ``request`` and wait until it has."""
        self._done.clear()
        self._requests.append(request)
        self._wake_write.send(b"!")
        if not self._done.wait(WAIT):
            raise TimeoutError(f"rig line server did not {request} within {WAIT} s")

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_read:
                    self._wake_read.recv(64)
                    if self._serve_requests():
                        return
                elif isinstance(sock, socket.socket):
                    self._receive(sock)

    def _serve_requests(self) -> bool:
        """Handle queued requests; return True if the thread should end."""
        stop = False
        while self._requests:
            request = self._requests.pop(0)
            for connection in list(self._buffers):
                self._drop(connection)
            stop = stop or request == "stop"
        self._done.set()
        return stop

    def _accept(self) -> None:
        connection, _ = self._listener.accept()
        self._buffers[connection] = b""
        self._selector.register(connection, selectors.EVENT_READ)

    def _drop(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        del self._buffers[connection]
        connection.close()

    def _receive(self, connection: socket.socket) -> None:
        try:
            data = connection.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop(connection)
            return
        buffer = self._buffers[connection] + data
        *lines, self._buffers[connection] = buffer.split(b"\r")
        for line in lines:
            reply = self._reply(line.strip(b"\n").decode("ascii", "replace").strip())
            if reply is not None:
                connection.sendall(reply.encode("ascii", "replace") + b"\r\n")

    def _reply(self, command: str) -> str | None:
        self.commands.append(command)
        if self.fault == "no_reply":
            return None
        if self.fault == "exception":
            return "*10"
        reply = self.firmware.reply(command)
        if self.fault == "garbled":
            return reply[::-1].replace(" ", "\x7f")  # the right characters in the wrong order
        return reply
