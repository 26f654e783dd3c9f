"""Temperature controllers of battery-lab chambers over Modbus, as backends of ``TemperatureChamber``.

Each controller is a register map (role name to :class:`devices.modbus.Register`) and a few
declared properties over it; all of them offer the chamber backend interface in SI units:
``read_temperature()`` and ``setpoint`` in K, ``set_setpoint(kelvin)``, and ``ramp_rate`` in K/s
(the controller's setpoint rate limit; None where the map has no such register). Controllers work
in degC; conversion happens here, once. Pick one by name with :func:`make_controller`.

Register maps and their sources. Addresses are protocol addresses, 0-based as sent on the wire.
Every number below was checked against the sources named; what could not be checked is marked
UNVERIFIED here and next to the map.

Eurotherm 2000 series (2204/2208/2404/2408/2416) and 3200 series (3208/3216/32h8)
    Parameters: 1 process value (PV.IN), 2 target setpoint (TG.SP), 4 working output %
    (WRK.OP), 5 working setpoint (WKG.SP, read only), 35 setpoint rate limit (SP.RAT, 0 = no rate
    limit), 75 instrument status bitmap (StAt: bit 5 sensor break, bit 13 timer/ramp running).

    * 3200: "3200 Series Engineering Handbook" HA028651 issue 7, section 15.5 "Parameter Modbus
      Addresses", http://88.208.23.73:8080/en/manual/eurotherm/3100/2440580?page=83 (1-35) and
      ?page=84 (75 and its bits); the same table in the ACS 3216 operators manual section 9.3,
      https://kitchen.manualsonline.com/manuals/mfg/acs/3200.html?p=24. Address 3 there is MAN.OP,
      the *manual* output value, not the output the loop drives; that is WRK.OP at 4 (this map
      read 3 before; corrected).
    * 2000: the "2000 Series Communications Handbook" HA026230 itself could not be read (only a PDF
      in DiamondLightSource/eurothermModbus, documentation/HA026230_3_2000 comms.pdf). Its table
      is reproduced by ESRF bliss (mirror marc2332/bliss,
      bliss/controllers/regulation/temperature/eurotherm/eurotherm2000_cmds.txt, 2400 series):
      1 process_variable, 2 target_setpoint, 3 pc_output_power, 4 working_output,
      5 working_set_point, 35 setpoint_rate_limit, 75 status_info, 531 setpoint_rate_limit_units;
      and by DiamondLightSource/eurothermModbus eurothermModbusApp/Db/eurothermL1.template (PV 1,
      SP 2, output 3, ramp rate 35, WSP 5) and NSLS-II/eurotherm2k
      eurotherm2kApp/src/eurothermModbus.cpp (ramp rate at loop base 1 + 34 = 35).
      UNVERIFIED for the 2000 series: the bit layout of status word 75 (the 3200 layout is assumed;
      thaeber/eurothermlib src/eurothermlib/controllers/generic.py decodes the same bits).
    * Scaled integers (low region): the value with the display's implied decimals, 25.3 degC is
      253 with one decimal, two's complement; the controller's comms resolution must be "full"
      (NSLS-II/eurotherm2k eurotherm2kApp/Db/eurothermModbusLoop.template).
    * IEEE region: every parameter at ``0x8000 + 2 * address`` as a float32, read with function 3/4
      and written with function 16 only (function 6 is refused): Eurotherm 2604 master comms
      supplement HA027664, B.8.1 "IEEE in 2000 Series",
      https://manuzoid.com/manuals/469L2-Eurotherm%202604%20Master%20Owner's%20manual.
      High word first: as read by working drivers, hailegroup/nupylab
      nupylab/drivers/eurotherm3216.py and eurotherm2400.py (minimalmodbus ``read_float`` at
      ``2 * address + 32768``, byte order 0 = big) and thaeber/eurothermlib generic.py; no Eurotherm
      text stating the word order was reachable.
    * Rate units: SP.RAT is in display units per the controller's rate units, address 531 (3200:
      0 per minute, 1 per hour, 2 per second, per nupylab eurotherm3216.py; 2000: named
      setpoint_rate_limit_units by bliss, enumeration UNVERIFIED). This module assumes per minute;
      set 531 to minutes on the controller. The limit 0 to 999.9 degC/min is labctl's own bound,
      not the controller's range (UNVERIFIED).

Watlow F4T
    Control loop 1: 2782 set point (float, RW), 2810 closed-loop (working) set point (float, R),
    2820 process value, 2808 output power; each further loop is 160 registers on. Floats take two
    registers, low word first (the F4T default, "Modbus Word Order: [Low High], High Low").

    * Watlow "F4T Setup and Operation User's Guide", chapter 6 appendix: addresses are relative
      (actual) and "by default, the low order word contains the two low bytes of the 32-bit
      parameter", https://www.easymanua.ls/watlow/f4t/manual?p=224; loop stride "Control Loop n:
      2846+((n-1)*160)", https://www.easymanua.ls/watlow/f4t/manual?p=234.
    * TestEquity F4T controller manual, chapter 4, "Common Modbus Registers, F4T Mode":
      2782 Temperature Set Point (IEEE float RW), 2810 Closed Loop Set Point (IEEE float R, the
      instantaneous set point during a ramp), loop 2 at 2942/2970 (= +160), registers "read and
      written in the low word-upper word order",
      https://www.easymanua.ls/testequity/f4t/manual?p=46 and ?p=51; default word order
      https://www.easymanua.ls/testequity/f4t/manual/746854?p=14.
    * EspecNorthAmerica/ChamberConnectLibrary chamberconnectlibrary/watlowf4t.py: loop set point
      2782, current set point 2810, process value 2820, current output power 2808 (manual power
      2784), ``+ (N-1)*160`` for loops 1 to 4; chamberconnectlibrary/modbus.py reads floats low
      word first.
      UNVERIFIED against Watlow's own table: 2820 and 2808 (only ChamberConnectLibrary has them;
      TestEquity reads the chamber temperature from 27586, universal input 1, instead).
    * Loop ramp (see ``WATLOW_F4T_RAMP_*``): 2794 ramp action, 2796 ramp scale, 2798 ramp rate,
      TestEquity manual p. 46/52 (loop 1). Not wired to ``ramp_rate``; see :class:`WatlowF4T`.

Binder MB1 and MB2 (different maps: MB2 is not MB1's map)
    * MB1: 0x11A9 process value (float, R), 0x1077 setpoint in force (float, R), 0x1581 manual-mode
      setpoint (float, RW). Floats low word first. ecree-solarflare/ovenctl ovenctl.py, quoting
      BINDER "Interface Technical Specifications" (Art. No. 7001-0242) section 2.11.7 (addresses)
      and 2.11.1 (word order); SiLab-Bonn/basil basil/HL/binder_mk53.py and RTS2/rts2
      src/sensord/binder.cpp use the same addresses and word order. On Ethernet the controller's
      RTU frames are tunnelled on TCP 10001 (ovenctl ``BINDER_PORT``; RTS2 binder.cpp).
      The setpoint at 0x1581 acts in manual mode only (mode word 0x1A22, 0x0800 = manual; ovenctl),
      which labctl does not set. auger-prime-sde/ess binder.py (Binder_MKFT115_MB1) names 0x1581
      "basic" and 0x156F "manual", the opposite of ovenctl; ovenctl quotes Binder's document, so its
      naming is kept.
    * MB2: 0x1004 temperature process value (float, R), 0x10B2 setpoint in force (float, R),
      0x114C manual setpoint (float, RW), floats low word first: auger-prime-sde/ess binder.py
      (Binder_MKFT115_MB2, and modbus.py ``words2floats``) and SiLab-Bonn/basil
      basil/HL/binder_mk56.py. (This module served MB2 with MB1's addresses before; corrected.)
      UNVERIFIED for MB2: reading 0x114C back (both sources only write it) and the framing on its
      Ethernet port (both sources use a serial line).
    * Neither controller has a setpoint-rate register in any source reached: Binder ramps are
      program segments (auger-prime-sde/ess writes segment gradients while editing a program) or
      are stepped by the host (RTS2 binder.cpp steps the manual setpoint). ``ramp_rate`` is None.
"""

from __future__ import annotations

from devices.modbus import ModbusLink, Register, register

CELSIUS_ZERO = 273.15  # K
SETPOINT_LIMITS = (-40.0, 200.0)  # degC: the chamber's rated range (cell-model.md); the device checks its own

# Eurotherm instrument status (address 75) bits used here; HA028651 section 15.5 (3200 series)
EUROTHERM_SENSOR_BREAK = 1 << 5  # B5 sensor break status
EUROTHERM_RAMP_RUNNING = 1 << 13  # B13 timer/ramp running

# Watlow F4T loop-1 setpoint ramp (TestEquity F4T manual ch. 4 p. 46/52; add 160 per further loop,
# the stride of every control-loop parameter in Watlow's appendix). Not part of the map: the rate
# only applies while ramp action is Set Point or Both, is per minute only with ramp scale Minutes,
# and no source says what a rate of 0 does (ramping off is ramp action Off).
WATLOW_F4T_RAMP_ACTION = 2794  # uint16: Off 62, Startup 88, Set Point 85, Both 13
WATLOW_F4T_RAMP_SCALE = 2796  # uint16: degrees/minute 57, degrees/hour 39
WATLOW_F4T_RAMP_RATE = 2798  # float32, low word first: 0 to 99,999 degrees per ramp scale


def eurotherm_registers(*, float_region: bool = True, decimals: int = 1) -> dict[str, Register]:
    """Return the Eurotherm 2000/3200 map: the IEEE float region, or the scaled-integer region."""

    def parameter(address: int, name: str, writable: bool = False, limits=None) -> Register:
        if float_region:  # HA027664 B.8.1: 0x8000 + 2 * address; high word first (nupylab, eurothermlib)
            return Register(0x8000 + 2 * address, "float32", writable=writable, limits=limits, name=name)
        return Register(address, "int16", scale=10.0 ** -decimals, writable=writable, limits=limits, name=name)

    return {  # HA028651 15.5 (3200); bliss eurotherm2000_cmds.txt (2400)
        "process_value": parameter(1, "PV.IN"),
        "target_setpoint": parameter(2, "TG.SP", writable=True, limits=SETPOINT_LIMITS),
        "output": parameter(4, "WRK.OP"),  # working output, %; 3 is MAN.OP (3200) / %OP (2000)
        "working_setpoint": parameter(5, "WKG.SP"),  # read only
        # 0 = no rate limit; per the rate units at 531 (assumed minutes). 0-999.9 is labctl's bound.
        "rate_limit": parameter(35, "SP.RAT", writable=True, limits=(0.0, 999.9)),
        # bitmap, always the integer region; 2000-series bits UNVERIFIED
        "status": Register(75, "uint16", name="StAt"),
    }


def watlow_f4t_registers(loop: int = 1) -> dict[str, Register]:
    """Return the Watlow F4T map of control loop ``loop`` (1 to 4)."""
    if not 1 <= loop <= 4:
        raise ValueError(f"Watlow F4T loop must be 1 to 4, got {loop}")
    offset = 160 * (loop - 1)  # "Control Loop n: X+((n-1)*160)", F4T user's guide appendix

    def parameter(address: int, name: str, writable: bool = False, limits=None) -> Register:
        # IEEE float, low word first: the F4T default word order (F4T user's guide; TestEquity manual)
        return Register(address + offset, "float32", word_order="little", writable=writable, limits=limits,
                        name=f"loop {loop} {name}")

    return {
        "process_value": parameter(2820, "process value"),  # ChamberConnectLibrary only (UNVERIFIED)
        "target_setpoint": parameter(2782, "set point", writable=True, limits=SETPOINT_LIMITS),  # TestEquity p. 46
        "working_setpoint": parameter(2810, "closed loop set point"),  # read only: TestEquity p. 46; CCL
        "output": parameter(2808, "output power"),  # %: ChamberConnectLibrary only (UNVERIFIED)
    }


def binder_registers(generation: str = "mb1") -> dict[str, Register]:
    """Return the Binder temperature map of an ``mb1`` or ``mb2`` controller."""

    def parameter(address: int, name: str, writable: bool = False, limits=None) -> Register:
        # float32, low word first: Binder techspec 2.11.1 via ovenctl; basil; auger-prime-sde/ess
        return Register(address, "float32", word_order="little", writable=writable, limits=limits, name=name)

    if generation == "mb1":  # ovenctl (Binder techspec 7001-0242, 2.11.7); basil binder_mk53; RTS2 binder.cpp
        return {
            "process_value": parameter(0x11A9, "process value 1"),  # R
            "target_setpoint": parameter(0x1581, "set point 1 manual", writable=True, limits=SETPOINT_LIMITS),  # RW
            "working_setpoint": parameter(0x1077, "set point 1 in force"),  # R
        }
    if generation == "mb2":  # auger-prime-sde/ess Binder_MKFT115_MB2; basil binder_mk56
        return {
            "process_value": parameter(0x1004, "temperature process value"),  # R
            # manual setpoint, RW; reading it back is UNVERIFIED (both sources only write it)
            "target_setpoint": parameter(0x114C, "manual set point", writable=True, limits=SETPOINT_LIMITS),
            "working_setpoint": parameter(0x10B2, "set point in force"),  # R
        }
    raise ValueError(f"Binder controller must be 'mb1' or 'mb2', got {generation!r}")


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
    output = register("output", "Measure the working output level (WRK.OP), %.")
    status = register("status", "Measure the instrument status bitmap (bit 5 sensor break, bit 13 timer/ramp running).")

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

    Notes
    -----
    ``ramp_rate`` is None here although the F4T has a loop ramp (``WATLOW_F4T_RAMP_ACTION``,
    ``_SCALE``, ``_RATE``): that rate acts only with the right ramp action and scale, and a rate of
    0 is not documented as "no limit", so it does not fit the setpoint-rate-limit contract of
    ``ramp_rate``. Configure the ramp on the controller, or ramp with a plan.
    """

    kind = "watlow-f4t"

    working_setpoint = register("working_setpoint", "Measure the loop's working setpoint, degC.")
    output = register("output", "Measure the loop's output power, %.")

    def __init__(self, link: ModbusLink, *, loop: int = 1):
        super().__init__(link, watlow_f4t_registers(loop))


class Binder(ModbusTemperatureController):
    """A Binder chamber with an MB1 controller, temperature only.

    The setpoint written is the manual-mode setpoint: put the controller in manual mode first.
    There is no setpoint-rate register (``ramp_rate`` is None).

    Parameters
    ----------
    link : devices.modbus.ModbusLink
        The connection (RTU framing; on the MB1's Ethernet port, ``rtu:socket://host:10001``).
    """

    kind = "binder-mb1"
    generation = "mb1"

    working_setpoint = register("working_setpoint", "Measure the setpoint in force (manual or program), degC.")

    def __init__(self, link: ModbusLink):
        super().__init__(link, binder_registers(self.generation))


class BinderMB2(Binder):
    """A Binder chamber with an MB2 controller, temperature only (its own map, not the MB1's).

    Parameters
    ----------
    link : devices.modbus.ModbusLink
        The connection (RTU on the serial port; the framing on the MB2's Ethernet port is unverified).
    """

    kind = "binder-mb2"
    generation = "mb2"


CONTROLLERS = {
    "eurotherm-2000": Eurotherm,
    "eurotherm-3200": Eurotherm,
    "watlow-f4t": WatlowF4T,
    "binder-mb1": Binder,
    "binder-mb2": BinderMB2,
}


def register_map(kind: str, **options) -> dict[str, Register]:
    """Return the register map of controller ``kind`` with ``options`` (for simulators and tests)."""
    cls = controller_class(kind)
    if issubclass(cls, Binder):
        return binder_registers(cls.generation, **options)
    maps = {Eurotherm: eurotherm_registers, WatlowF4T: watlow_f4t_registers}
    return maps[cls](**options)


def controller_class(kind: str) -> type[ModbusTemperatureController]:
    """Return the controller class for a lab-file ``kind``, e.g. ``eurotherm-3200``."""
    try:
        return CONTROLLERS[kind]
    except KeyError:
        raise ValueError(f"unknown chamber controller {kind!r}; known: {', '.join(CONTROLLERS)}") from None


def make_controller(kind: str, link: ModbusLink, **options) -> ModbusTemperatureController:
    """Return the controller ``kind`` (see ``CONTROLLERS``) on ``link``; ``options`` go to its class."""
    return controller_class(kind)(link, **options)
