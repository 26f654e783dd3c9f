"""The lab file's models: instruments, their hardware limits and addresses, storage."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from labctl import safety
from labctl.config.documents import Document
from labctl.config.problems import raise_problems
from labctl.config.rigs import AlertsSection, QueueSection
from labctl.core.units import Unit


class ConfigModel(BaseModel):
    """Base of the config models: unknown keys are errors, because a misspelt key would be ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Names that end up in run metadata, file names and folder names (cell ids, experiment names).
IDENTIFIER = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
IDENTIFIER_RULE = "use 1 to 64 letters, digits, '-', '_' and '.', not starting with '.'"


def _check_identifier(value: str) -> str:
    if IDENTIFIER.fullmatch(value):
        return value
    shown = repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value):,} characters)"
    raise ValueError(f"{shown} is not allowed as an identifier (it names runs and files): {IDENTIFIER_RULE}")


Identifier = Annotated[str, AfterValidator(_check_identifier)]

Voltage = Annotated[float, Unit("V")]
Temperature = Annotated[float, Unit("degC", gt=-273.15)]
Pressure = Annotated[float, Unit("MPa", ge=0)]


def _range_problems(name: str, pair: tuple[float, float], display: str) -> list[tuple[str, str]]:
    low, high = pair
    if low < high:
        return []
    unit = Unit(display)
    return [(name, f"write [low, high] with low below high, got [{unit.from_si(low):g}, {unit.from_si(high):g}] {display}")]


ROLES = ("potentiostat", "chamber", "rig", "impedance_analyser")  # the role names plans take devices by
# The SP-200's largest current range is 100 mA (KBIO_IRANGE_100mA, code 9: the channel's MaxIRange,
# devices/biologic/FACTS.md); the encoder cannot run a larger current, so no lab may allow one.
SP200_LARGEST_RANGE = 0.1  # A
HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
SERIAL_PORT = re.compile(r"^(?:/dev/[A-Za-z0-9._/+-]+|COM[1-9][0-9]{0,2})$")
USB_PORT = re.compile(r"^USB[0-9]{1,2}$")  # BL_Connect's names for USB-connected BioLogic instruments


def host_problem(host: str) -> str | None:
    """Return what is wrong with a host name or IPv4 address, or None."""
    if re.fullmatch(r"[0-9.]+", host):
        octets = host.split(".")
        if len(octets) != 4 or not all(octets):
            return f"{host} is not an IPv4 address (four octets 0-255, e.g. 192.168.0.10)"
        high = [int(o) for o in octets if int(o) > 255]
        return f"IP octet {high[0]} in {host} is above 255 (octets are 0-255)" if high else None
    return None if re.fullmatch(HOST, host) else f"{host!r} is not a host name or an IPv4 address"


def host_port_problem(text: str) -> str | None:
    """Return what is wrong with ``host:port``, or None."""
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        return f"{text!r} has no host:port"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"TCP port {port!r} is not a number from 1 to 65535"
    return host_problem(host)


def modbus_address_problem(address: str) -> str | None:
    """Return what is wrong with a chamber's Modbus address (see devices.modbus.ModbusLink), or None."""
    if address.startswith("tcp://"):
        return host_port_problem(address[len("tcp://"):])
    if address.startswith("rtu:socket://"):
        return host_port_problem(address[len("rtu:socket://"):])
    if address.startswith("rtu:"):
        port, _, query = address[len("rtu:"):].partition("?")
        if not SERIAL_PORT.match(port):
            return f"{port!r} is not a serial port (/dev/ttyUSB0, /dev/serial/by-id/..., COM3)"
        bad = [k for k, _ in parse_qsl(query) if k not in ("baudrate", "parity", "stopbits", "bytesize")]
        return f"unknown serial option {bad[0]!r} (baudrate, parity, stopbits, bytesize)" if bad else None
    return "not a Modbus address"


def rig_address_problem(address: str) -> str | None:
    """Return what is wrong with the rig's line address (a serial port or socket://host:port), or None."""
    if address.startswith("socket://"):
        return host_port_problem(address[len("socket://"):])
    return None if SERIAL_PORT.match(address) else "not a serial port or socket://host:port"


def potentiostat_address_problem(address: str) -> str | None:
    """Return what is wrong with a BioLogic address for BL_Connect (an IPv4 address or USB0), or None."""
    if USB_PORT.match(address):
        return None
    if not re.fullmatch(r"[0-9.]+", address):
        return "not an IPv4 address or USBn"
    return host_problem(address)


ADDRESS_FORMS = {
    "potentiostat": "an IPv4 address (octets 0-255, e.g. 192.168.0.10) or USB0",
    "chamber": "tcp://host:port or rtu:socket://host:port (port 1-65535), or rtu:/dev/ttyUSB0?baudrate=9600",
    "rig": "a serial port (/dev/ttyUSB1, COM4) or socket://host:port (port 1-65535)",
    "impedance_analyser": "sim",
}


def _address_problems(role: str, address: str, check: Callable[[str], str | None]) -> list[tuple[str, str]]:
    if address == "sim":
        return []
    problem = check(address)
    return [] if problem is None else [("address", f"{address!r}: {problem}; write {ADDRESS_FORMS[role]}")]


class InstrumentConfig(ConfigModel):
    """What every instrument has: whether it is simulated, and where it is."""

    simulated: bool | None = Field(
        None, description="true: the simulator; false: the real instrument at address; default: the lab's simulated")
    address: str = Field(description="where the real instrument is, or 'sim' for a simulated one")


class PotentiostatConfig(InstrumentConfig):
    """The potentiostat channel the cell is on, and its hardware limits."""

    kind: str = Field(description="instrument model, e.g. biologic-sp200")
    library: str | None = Field(None, description="path to EClib64.dll (EC-Lab Development Package), real labs")
    channel: int = Field(1, ge=1, le=16)
    current_limit: Annotated[float, Unit("mA", gt=0)]
    voltage_window: tuple[Voltage, Voltage]
    bandwidth: int = Field(8, ge=1, le=9)
    lead_resistance: Annotated[float, Unit("ohm", ge=0)] | None = None  # leads shorted: bounds a fit's R0

    @model_validator(mode="after")
    def _check(self):
        problems = _range_problems("voltage_window", self.voltage_window, "V")
        problems += _address_problems("potentiostat", self.address, potentiostat_address_problem)
        if self.kind == "biologic-sp200" and self.current_limit > SP200_LARGEST_RANGE:
            problems.append(("current_limit", f"{safety.show(self.current_limit, 'A')} is above the SP-200's largest "
                             f"current range, {safety.show(SP200_LARGEST_RANGE, 'mA')}; write at most that"))
        if self.kind == "biologic-sp200" and max(abs(v) for v in self.voltage_window) > 10.0:
            problems.append(("voltage_window", f"[{self.voltage_window[0]:g}, {self.voltage_window[1]:g}] V passes "
                             "the SP-200's +/-10 V potential range; write limits within [-10 V, 10 V]"))
        raise_problems(problems)
        return self


# Kinds the lab builder knows (devices.chamber.controllers.CONTROLLERS, devices.rig.protocol); "sim"
# puts the simulator in process, any other kind puts the real driver in front of it on loopback.
CHAMBER_KINDS = ("sim", "eurotherm-2000", "eurotherm-3200", "watlow-f4t", "binder-mb1", "binder-mb2")
RIG_KINDS = ("sim", "mark10-rig")
ANALYSER_KINDS = ("biologic-mtz35",)  # devices.biologic.mtz35; simulated labs only (README, "The MTZ-35")


class ChamberConfig(InstrumentConfig):
    """The temperature chamber: its range, its safe setpoint (see Lab.make_safe) and what counts as stable."""

    kind: Literal[CHAMBER_KINDS]
    unit: int = Field(1, ge=1, le=247, description="the controller's Modbus unit id (slave address), 1-247")
    temperature_range: tuple[Temperature, Temperature]
    safe_setpoint: Temperature
    # "0.5 degC" would read as an absolute temperature (273.65 K); the bound catches that slip.
    stability_band: Annotated[float, Unit("K", gt=0, le=20)] = 0.5
    stability_hold: Annotated[float, Unit("min", ge=0)] = 300.0

    @model_validator(mode="after")
    def _check(self):
        problems = _range_problems("temperature_range", self.temperature_range, "degC")
        problems += safety.chamber_range_problems(self.kind, self.temperature_range)
        low, high = self.temperature_range
        if not problems and not low <= self.safe_setpoint <= high:
            problems.append(("safe_setpoint", "must lie inside temperature_range"))
        problems += _address_problems("chamber", self.address, modbus_address_problem)
        raise_problems(problems)
        return self


class RigConfig(InstrumentConfig):
    """The stack-pressure rig: pressed area, pressure range, control band, and what it does when an experiment ends (Lab.make_safe)."""

    kind: Literal[RIG_KINDS]
    area: Annotated[float, Unit("cm^2", gt=0)]
    pressure_range: tuple[Pressure, Pressure]
    band: Annotated[float, Unit("MPa", gt=0)] = 0.1e6
    on_finish: Literal["hold", "release"] = "hold"

    @model_validator(mode="after")
    def _check(self):
        problems = _range_problems("pressure_range", self.pressure_range, "MPa")
        problems += _address_problems("rig", self.address, rig_address_problem)
        raise_problems(problems)
        return self


class ImpedanceAnalyserConfig(InstrumentConfig):
    """The impedance analyser for potentiostatic EIS (BioLogic MTZ-35), and the lab's cap on its amplitude."""

    kind: Literal[ANALYSER_KINDS]
    address: str = Field(description="'sim' for the simulator; labctl cannot drive a real MTZ-35 yet")
    # The lab's own cap on the sine amplitude (peak); the generator cannot pass +/- 10 V.
    max_amplitude: Annotated[float, Unit("V", gt=0, le=10)]
    lead_resistance: Annotated[float, Unit("ohm", ge=0)] | None = None  # leads shorted: bounds a fit's R0


class Instruments(ConfigModel):
    """The instruments a lab has, by the role names plans use; any may be left out. With an impedance
    analyser, peis runs on it."""

    potentiostat: PotentiostatConfig | None = None
    chamber: ChamberConfig | None = None
    rig: RigConfig | None = None
    impedance_analyser: ImpedanceAnalyserConfig | None = None

    def present(self) -> list[str]:
        """Return the roles the lab file has, in the order of :data:`ROLES`."""
        return [role for role in ROLES if getattr(self, role) is not None]


class StorageConfig(ConfigModel):
    """Where runs are stored: a local folder, and a tiled server (None: an embedded one)."""

    data_dir: str = "data"
    uri: str | None = None
    lock_dir: str | None = None  # where instrument locks go (labctl.locks); None: a real lab uses /tmp/labctl-locks

    @property
    def data_path(self) -> Path:
        """Get the data folder; a relative one is taken from the current working directory."""
        return Path(self.data_dir).expanduser().resolve()


class LabConfig(ConfigModel):
    """A lab file: its instruments, their limits, storage, and whether it is simulated."""

    name: str
    simulated: bool
    seed: int = 0
    storage: StorageConfig = Field(default_factory=StorageConfig)
    instruments: Instruments
    queue: QueueSection | None = None  # a lab of many rigs: its queue and alerts (labctl.config.rigs)
    alerts: AlertsSection | None = None
    _document: Document | None = PrivateAttr(None)  # for the lines of lab_default_problems

    _path: Path | None = PrivateAttr(None)  # the file it was read from, for messages

    @property
    def path(self) -> Path | None:
        """Get the lab file this was read from (None if built in code)."""
        return self._path

    def simulates(self, role: str) -> bool:
        """Return whether the instrument ``role`` is simulated: its own ``simulated``, else the lab's."""
        instrument = getattr(self.instruments, role)
        return self.simulated if instrument is None or instrument.simulated is None else instrument.simulated

    @property
    def fully_simulated(self) -> bool:
        """Get whether every instrument the lab has is simulated (then it runs on the virtual clock)."""
        return all(self.simulates(role) for role in self.instruments.present())

    @model_validator(mode="after")
    def _check_instruments(self):
        """A simulated instrument has address sim; a real one its address, and what its driver needs."""
        problems = []
        for role in self.instruments.present():
            problems += [(("instruments", role, *field), message) for field, message in self._problems_of(role)]
        raise_problems(problems)
        return self

    def _problems_of(self, role: str) -> list[tuple[tuple, str]]:
        instrument, simulated = getattr(self.instruments, role), self.simulates(role)
        whose = "its own simulated: true" if instrument.simulated else "the lab's simulated: true"
        if simulated:
            if instrument.address == "sim":
                return []
            return [(("address",), f"{instrument.address!r} is a real address under a simulated instrument "
                     f"({whose}), which would be ignored; write address: sim, or simulated: false to drive it")]
        if role == "impedance_analyser":
            return [((), "labctl cannot drive a real MTZ-35: BioLogic publishes no programming interface for it "
                     "(README, 'The MTZ-35 impedance analyser'); simulate it (simulated: true, address: sim) or "
                     "remove this section and peis runs on the potentiostat")]
        problems = []
        if instrument.address == "sim":
            problems.append((("address",), f"a real {role} needs its address, not sim; write "
                             f"{ADDRESS_FORMS[role]}, or simulated: true to simulate it"))
        if role == "potentiostat" and instrument.library is None:
            problems.append(((), "a real potentiostat needs library: the path to EClib64.dll of the EC-Lab "
                             "Development Package"))
        if role in ("chamber", "rig") and instrument.kind == "sim":
            problems.append((("kind",), f"a real {role} needs the controller's kind, not sim"))
        return problems
