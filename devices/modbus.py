"""A Modbus layer on pymodbus: a link that never hangs, and registers declared once.

A :class:`ModbusLink` is one connection to one device (unit): Modbus TCP (``tcp://host:port``),
RTU over a serial port (``rtu:/dev/ttyUSB0?baudrate=9600``) or RTU tunnelled through a socket
(``rtu:socket://host:port``, any pyserial URL). Every request has a timeout; a request that gets
no valid reply (timeout, garbled frame, lost connection) closes the connection, waits with
exponential backoff and tries again, and after the last attempt raises
:class:`ModbusCommunicationError` naming the device and its address. A Modbus exception reply is
the device refusing the request: it is not retried and raises :class:`ModbusDeviceError`. Both are
:class:`devices.errors.InstrumentFault`, so a plan's stop reason names the instrument.

A :class:`Register` says where a value lives and how it is encoded (data type, scaling, word
order, limits); :func:`register` turns a role in a register map into a property of a driver class,
the way pymeasure's ``Instrument.control`` turns a command into one. No bluesky or ophyd here.
"""

from __future__ import annotations

import struct
import time
import weakref
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qsl

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

from devices.errors import InstrumentFault, InstrumentLost
from devices.retry import RetryPolicy, retry

# struct codes and register counts of the data types registers hold
DATA_TYPES = {"int16": ("h", 1), "uint16": ("H", 1), "int32": ("i", 2), "uint32": ("I", 2), "float32": ("f", 2)}
# Modbus Application Protocol Specification V1.1b3, section 7 "MODBUS Exception Responses"
EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   8: "memory parity error", 10: "gateway path unavailable",
                   11: "gateway target device failed to respond"}
# What a code usually means on a bench: a wrong unit id shows up as these, not as "wrong address".
EXCEPTION_HINTS = {
    1: "the device does not support this function; check the controller kind in the lab file",
    2: "the device has no such register; check the controller kind (register map) in the lab file",
    4: "check the unit id (unit: in the lab file): some devices and gateways answer this for a unit that is not there",
    5: "the device accepted the request but needs longer; try again later",
    6: "the device is busy; try again later",
    10: "the gateway has no path to that unit; check the unit id (unit: in the lab file) and the gateway's routing",
    11: "no device answered the gateway at that unit id; check the unit id (unit: in the lab file), "
        "the serial wiring and baud rate behind the gateway",
}
# A request can fail on the link itself: pymodbus raises ModbusException for a timeout or a
# garbled frame, and lets the socket's own errors (reset, broken pipe, refused, timeout) through.
TRANSIENT_ERRORS = (ModbusException, OSError)


class ModbusCommunicationError(InstrumentLost):
    """No valid reply from a Modbus device after every attempt; the message names it and its address."""


class ModbusDeviceError(InstrumentFault, RuntimeError):
    """The device answered with a Modbus exception (it refused the request)."""


@dataclass(frozen=True)
class Register:
    """Where a value lives in a device's register map and how it is encoded.

    Parameters
    ----------
    address : int
        Protocol (0-based) address of the first register.
    dtype : str
        One of ``int16``, ``uint16``, ``int32``, ``uint32``, ``float32``.
    scale : float
        Engineering value = raw value x ``scale`` (0.1 for an integer with one implied decimal).
    word_order : str
        ``big`` (high word first, the Modbus convention) or ``little`` (low word first).
    writable : bool
        Whether the driver may write it.
    limits : (float, float), optional
        Engineering values accepted for writing; anything else is refused before it is sent.
    """

    address: int
    dtype: str = "int16"
    scale: float = 1.0
    word_order: str = "big"
    writable: bool = False
    limits: tuple[float, float] | None = None
    name: str = ""  # the manufacturer's mnemonic (PV.IN), used in messages

    def __post_init__(self):
        if self.dtype not in DATA_TYPES:
            raise ValueError(f"register {self.address}: unknown dtype {self.dtype!r}, use one of {list(DATA_TYPES)}")
        if self.word_order not in ("big", "little"):
            raise ValueError(f"register {self.address}: word_order must be 'big' or 'little'")

    @property
    def label(self) -> str:
        """Get how messages name the register: its mnemonic and its address."""
        return f"{self.name} (register {self.address})" if self.name else f"register {self.address}"

    @property
    def count(self) -> int:
        """Get how many 16-bit registers the value takes."""
        return DATA_TYPES[self.dtype][1]

    def encode(self, value: float) -> list[int]:
        """Return the register words for the engineering ``value``."""
        code = DATA_TYPES[self.dtype][0]
        raw = value / self.scale if code == "f" else round(value / self.scale)
        try:
            data = struct.pack(f">{code}", raw)
        except struct.error as exc:
            raise ValueError(f"register {self.address}: {value!r} does not fit a {self.dtype}") from exc
        words = list(struct.unpack(f">{self.count}H", data))
        return words[::-1] if self.word_order == "little" else words

    def decode(self, words: list[int]) -> float:
        """Return the engineering value held in the register ``words``."""
        words = list(words[::-1] if self.word_order == "little" else words)
        (raw,) = struct.unpack(f">{DATA_TYPES[self.dtype][0]}", struct.pack(f">{self.count}H", *words))
        return raw if self.scale == 1 else raw * self.scale  # bitmaps and counts stay integers

    def check(self, value: float) -> float:
        """Return ``value`` if it may be written here, else raise ``ValueError``."""
        if not self.writable:
            raise ValueError(f"{self.label} is read-only")
        if self.limits is not None and not self.limits[0] <= value <= self.limits[1]:
            raise ValueError(f"{self.label}: {value!r} is outside {self.limits[0]:g} to {self.limits[1]:g}")
        return value

    def shifted(self, offset: int) -> "Register":
        """Return the same register ``offset`` addresses further (another loop or channel)."""
        return Register(self.address + offset, self.dtype, self.scale, self.word_order, self.writable, self.limits,
                        self.name)


def register(role: str, docs: str) -> property:
    """Return a property that reads (and, if writable, writes) ``self.registers[role]`` over ``self.link``.

    The owning class provides ``link`` (a :class:`ModbusLink`) and ``registers`` (role name to
    :class:`Register`), so one declaration serves every variant of a register map (the integer or
    the float region, loop 1 or loop 3).
    """

    def fget(self):
        return self.link.read(self.registers[role])

    def fset(self, value):
        spec = self.registers[role]
        self.link.write(spec, spec.check(value))

    return property(fget, fset, doc=docs)


def make_client(url: str, timeout: float):
    """Return a pymodbus sync client for ``url`` (see :class:`ModbusLink` for the forms)."""
    if url.startswith("tcp://") or url.startswith("rtu:socket://"):
        # RTU frames through a socket (serial-to-Ethernet gateways, Binder's port 10001) need no
        # serial timing: pymodbus's TCP transport with the RTU framer carries them.
        framer = FramerType.SOCKET if url.startswith("tcp://") else FramerType.RTU
        host, _, port = url.partition("://")[2].rpartition(":")
        return ModbusTcpClient(host, port=int(port), framer=framer, timeout=timeout, retries=0)
    if url.startswith("rtu:"):
        port, _, query = url[len("rtu:"):].partition("?")
        options: dict = {key: (value if key == "parity" else int(value)) for key, value in parse_qsl(query)}
        return ModbusSerialClient(port, framer=FramerType.RTU, timeout=timeout, retries=0, **options)
    raise ValueError(f"Modbus address {url!r}: write tcp://host:port, rtu:/dev/ttyX?baudrate=9600 or rtu:socket://host:port")


class ModbusLink:
    """One Modbus device at one address, with timeouts, retries and backoff.

    Parameters
    ----------
    url : str
        ``tcp://host:port``, ``rtu:/dev/ttyUSB0?baudrate=9600&parity=E`` or ``rtu:socket://host:port``.
    device_id : int
        Modbus unit (slave) address, 1 to 247 (the lab file's ``unit``).
    timeout : float
        Seconds to wait for each reply.
    attempts : int
        Tries per request before giving up.
    backoff, max_backoff : float
        First wait before a retry, s, doubled at each further retry up to ``max_backoff``.
    sleep : callable
        How to wait between attempts (``time.sleep``; tests pass a recorder).
    name : str, optional
        The instrument's role, e.g. ``chamber``, for error messages.
    """

    def __init__(self, url: str, *, device_id: int = 1, timeout: float = 0.5, attempts: int = 4,
                 backoff: float = 0.05, max_backoff: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                 name: str | None = None):
        self.url, self.device_id = url, device_id
        self.label = f"{name} (Modbus unit {device_id})" if name else f"Modbus unit {device_id}"
        self.policy, self.sleep = RetryPolicy(attempts, backoff, max_backoff), sleep
        self.client = make_client(url, timeout)
        self.reconnects = 0  # connections dropped and re-opened so far
        # A link dropped without close() (a lab rebuilt in a session) must not leak its socket.
        weakref.finalize(self, self.client.close)

    def __repr__(self) -> str:
        return f"ModbusLink({self.url!r}, device_id={self.device_id})"

    @property
    def attempts(self) -> int:
        """Get how many tries each request gets."""
        return self.policy.attempts

    def read(self, spec: Register) -> float:
        """Measure the value of ``spec`` (holding registers, function 3)."""
        words = self._request(f"read of {spec.label}", lambda: self.client.read_holding_registers(
            spec.address, count=spec.count, device_id=self.device_id)).registers
        if len(words) != spec.count:  # a short frame that passed the CRC: not a reading
            raise ModbusCommunicationError(self.label, self.url, f"the read of {spec.label} returned "
                                           f"{len(words)} registers, expected {spec.count}")
        return spec.decode(list(words))

    def write(self, spec: Register, value: float) -> None:
        """Set ``spec`` to ``value`` (function 16, write multiple registers)."""
        words = spec.encode(value)
        self._request(f"write of {value!r} to {spec.label}", lambda: self.client.write_registers(
            spec.address, words, device_id=self.device_id))

    def read_words(self, address: int, count: int) -> list[int]:
        """Measure ``count`` raw holding registers from ``address``."""
        return list(self._request(f"read of registers {address}+{count}", lambda: self.client.read_holding_registers(
            address, count=count, device_id=self.device_id)).registers)

    def close(self) -> None:
        """Close the connection (the next request opens it again)."""
        self.client.close()

    def _request(self, what: str, call):
        response = retry(call, policy=self.policy, transient=lambda error: isinstance(error, TRANSIENT_ERRORS),
                         give_up=lambda error, attempts: self._lost(what, error, attempts),
                         on_failure=self._drop, sleep=self.sleep, label=f"{self.label} at {self.url}: {what}")
        if isinstance(response, ExceptionResponse) or response.isError():
            raise self._refused(what, getattr(response, "exception_code", 0))
        return response

    def _drop(self, error: BaseException) -> None:
        """Close the connection after a failed request: the stream may hold half a frame."""
        self.client.close()
        self.reconnects += 1

    def _lost(self, what: str, error: BaseException, attempts: int) -> ModbusCommunicationError:
        cause = f"{type(error).__name__}: {error}" if isinstance(error, OSError) else str(error)
        return ModbusCommunicationError(
            self.label, self.url, f"no valid reply to the {what} after {attempts} attempts, reconnecting before "
            f"each retry ({cause}); check the address, cable and unit id")

    def _refused(self, what: str, code: int) -> ModbusDeviceError:
        name = EXCEPTION_NAMES.get(code, "not a code the Modbus specification defines")
        hint = f"; {EXCEPTION_HINTS[code]}" if code in EXCEPTION_HINTS else ""
        return ModbusDeviceError(self.label, self.url, f"refused the {what}: exception {code} ({name}){hint}")
