"""Temperature controllers of battery-lab chambers over Modbus, as backends of ``TemperatureChamber``.

Each controller is a register map (role name to :class:`devices.modbus.Register`) and a few
declared properties over it; all of them offer the chamber backend interface in SI units:
``read_temperature()`` and ``setpoint`` in K, ``set_setpoint(kelvin)``, and ``ramp_rate`` in K/s
(the controller's setpoint rate limit; None where the map has no such register). Controllers work
in degC; conversion happens here, once. Pick one by name with :func:`make_controller`.

Register maps, with where they come from (protocol addresses, 0-based as sent on the wire):

* Eurotherm 2000 (2204/2208/2404/2408/2416) and 3200 (3208/3216/32h8) series: Eurotherm "2000
  Series Communications Handbook" (HA026230) and "3200 Series Engineering Handbook" (HA028651),
  Modbus parameter tables: 1 PV, 2 target setpoint, 3 output %, 5 working setpoint, 35 setpoint
  rate limit (0 = off), 75 instrument status bitmap. Integers in the low region carry the
  display's implied decimals (25.3 degC is 253 with one decimal); the IEEE region at
  ``0x8000 + 2 * address`` holds every parameter as a full-resolution float32, high word first.
* Watlow F4T: "F4T Setup and Operation User's Guide", Modbus map of the Control Loop and Analog
  Input menus: loop 1 closed-loop setpoint 2782, working setpoint 2810, process value 2820,
  output power 2808; each further loop is 160 registers on. Floats take two registers, low word
  first (the F4T default "Modbus word order: low-high"). The same addresses are used by Espec's
  ChamberConnectLibrary (``watlowf4t.py``).
* Binder MB1: Binder "Modbus communication for the MB1 controller" interface description: actual
  temperature 0x11A9, manual-mode temperature setpoint 0x1581, float32 low word first, RTU framing
  (also over the controller's Ethernet port, TCP 10001). Binder MB2 controllers are served with
  the same addresses; that is taken from Binder's MB1 document and has not been checked against an
  MB2 unit. Neither map has a setpoint-rate register: Binder ramps are programs, not a parameter.
"""

from __future__ import annotations

from devices.modbus import ModbusLink, Register, register

CELSIUS_ZERO = 273.15  # K
SETPOINT_LIMITS = (-40.0, 200.0)  # degC: the chamber's rated range (cell-model.md); the device checks its own

# Eurotherm instrument status (address 75) bits used here
EUROTHERM_SENSOR_BREAK = 1 << 5
EUROTHERM_RAMP_RUNNING = 1 << 13


def eurotherm_registers(*, float_region: bool = True, decimals: int = 1) -> dict[str, Register]:
    """Return the Eurotherm 2000/3200 map: the IEEE float region, or the scaled-integer region."""

    def parameter(address: int, writable: bool = False, limits=None) -> Register:
        if float_region:
            return Register(0x8000 + 2 * address, "float32", writable=writable, limits=limits)
        return Register(address, "int16", scale=10.0 ** -decimals, writable=writable, limits=limits)

    return {
        "process_value": parameter(1),
        "target_setpoint": parameter(2, writable=True, limits=SETPOINT_LIMITS),
        "output": parameter(3),
        "working_setpoint": parameter(5),
        "rate_limit": parameter(35, writable=True, limits=(0.0, 999.9)),  # degC/min, 0 = off
        "status": Register(75, "uint16"),  # a bitmap: always the integer region
    }


def watlow_f4t_registers(loop: int = 1) -> dict[str, Register]:
    """Return the Watlow F4T map of control loop ``loop`` (1 to 4)."""
    if not 1 <= loop <= 4:
        raise ValueError(f"Watlow F4T loop must be 1 to 4, got {loop}")
    offset = 160 * (loop - 1)

    def parameter(address: int, writable: bool = False, limits=None) -> Register:
        return Register(address + offset, "float32", word_order="little", writable=writable, limits=limits)

    return {
        "process_value": parameter(2820),
        "target_setpoint": parameter(2782, writable=True, limits=SETPOINT_LIMITS),
        "working_setpoint": parameter(2810),
        "output": parameter(2808),
    }


def binder_registers() -> dict[str, Register]:
    """Return the Binder MB1 (and MB2) temperature map."""
    return {
        "process_value": Register(0x11A9, "float32", word_order="little"),
        "target_setpoint": Register(0x1581, "float32", word_order="little", writable=True, limits=SETPOINT_LIMITS),
    }


class ModbusTemperatureController:
    """A temperature controller behind a :class:`ModbusLink`, with the chamber backend interface.

    Parameters
    ----------
    link : devices.modbus.ModbusLink
        The connection to the controller.
    registers : dict of str to Register
        The controller's register map by role.
    """

    kind = "modbus"

    process_value = register("process_value", "Measure the process value (chamber temperature), degC.")
    target_setpoint = register("target_setpoint", "Control the target setpoint, degC.")

    def __init__(self, link: ModbusLink, registers: dict[str, Register]):
        self.link = link
        self.registers = registers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.link!r})"

    def read_temperature(self) -> float:
        """Measure the chamber temperature, K."""
        return self.process_value + CELSIUS_ZERO

    @property
    def setpoint(self) -> float:
        """Get the target setpoint as the controller holds it, K."""
        return self.target_setpoint + CELSIUS_ZERO

    def set_setpoint(self, kelvin: float) -> None:
        """Set the target setpoint, K."""
        self.target_setpoint = kelvin - CELSIUS_ZERO

    @property
    def ramp_rate(self) -> float | None:
        """Control the setpoint rate limit, K/s (0: no limit; None: this controller has no such register)."""
        if "rate_limit" not in self.registers:
            return None
        return self.link.read(self.registers["rate_limit"]) / 60.0

    @ramp_rate.setter
    def ramp_rate(self, kelvin_per_second: float) -> None:
        if "rate_limit" not in self.registers:
            raise ValueError(f"{self.kind} at {self.link.url} has no setpoint-rate register; ramp with a plan instead")
        spec = self.registers["rate_limit"]
        self.link.write(spec, spec.check(kelvin_per_second * 60.0))

    def close(self) -> None:
        """Close the connection."""
        self.link.close()


class Eurotherm(ModbusTemperatureController):
    """A Eurotherm 2000 or 3200 series controller.

    Parameters
    ----------
    link : devices.modbus.ModbusLink
        The connection (these controllers speak RTU; through a gateway, TCP).
    float_region : bool
        Use the full-resolution IEEE region (default) or the scaled integers.
    decimals : int
        Implied decimals of the integer region (the display resolution set on the controller).
    """

    kind = "eurotherm"

    working_setpoint = register("working_setpoint", "Measure the working (ramping) setpoint, degC.")
    output = register("output", "Measure the output level, %.")
    status = register("status", "Measure the instrument status bitmap (bit 5 sensor break, bit 13 ramp running).")

    def __init__(self, link: ModbusLink, *, float_region: bool = True, decimals: int = 1):
        super().__init__(link, eurotherm_registers(float_region=float_region, decimals=decimals))


class WatlowF4T(ModbusTemperatureController):
    """A Watlow F4T controller, one of its control loops.

    Parameters
    ----------
    link : devices.modbus.ModbusLink
        The connection (Modbus TCP on the F4T's Ethernet port, or RTU).
    loop : int
        The control loop that runs the chamber, 1 to 4.
    """

    kind = "watlow-f4t"

    working_setpoint = register("working_setpoint", "Measure the loop's working setpoint, degC.")
    output = register("output", "Measure the loop's output power, %.")

    def __init__(self, link: ModbusLink, *, loop: int = 1):
        super().__init__(link, watlow_f4t_registers(loop))


class Binder(ModbusTemperatureController):
    """A Binder chamber with an MB1 (or MB2) controller, temperature only.

    Parameters
    ----------
    link : devices.modbus.ModbusLink
        The connection (RTU framing; on Ethernet, ``rtu:socket://host:10001``).
    """

    kind = "binder"

    def __init__(self, link: ModbusLink):
        super().__init__(link, binder_registers())


CONTROLLERS = {
    "eurotherm-2000": Eurotherm,
    "eurotherm-3200": Eurotherm,
    "watlow-f4t": WatlowF4T,
    "binder-mb1": Binder,
    "binder-mb2": Binder,
}


def register_map(kind: str, **options) -> dict[str, Register]:
    """Return the register map of controller ``kind`` with ``options`` (for simulators and tests)."""
    maps = {Eurotherm: eurotherm_registers, WatlowF4T: watlow_f4t_registers, Binder: binder_registers}
    return maps[controller_class(kind)](**options)


def controller_class(kind: str) -> type[ModbusTemperatureController]:
    """Return the controller class for a lab-file ``kind``, e.g. ``eurotherm-3200``."""
    try:
        return CONTROLLERS[kind]
    except KeyError:
        raise ValueError(f"unknown chamber controller {kind!r}; known: {', '.join(CONTROLLERS)}") from None


def make_controller(kind: str, link: ModbusLink, **options) -> ModbusTemperatureController:
    """Return the controller ``kind`` (see ``CONTROLLERS``) on ``link``; ``options`` go to its class."""
    return controller_class(kind)(link, **options)
