"""Lab and experiment files: YAML in, typed SI models out, every problem named by file, line and field.

A lab file (``configs/lab-sim.yaml``) says which instruments a lab has and their hardware limits.
An experiment file (``configs/plating-overnight.yaml``) says which cell is in the rig and which
plans to run on it. Quantities are written with units (``0.5 mA/cm^2``, ``5 MPa``) and stored as SI
floats. Each step's arguments are checked against a model generated from the plan's own signature,
so the YAML schema of a plan cannot drift from the plan.

Public API: :func:`load_lab`, :func:`load_experiment`, :func:`check_against_lab`,
:func:`build_step_model`, and the models :class:`LabConfig`, :class:`Experiment`, :class:`Cell`,
:class:`Step`. Both loaders raise :class:`~labctl.errors.ConfigErrors` with every problem found.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, model_validator

from labctl import safety
from labctl.errors import ConfigError, ConfigErrors
from labctl.lab_sections import AlertsSection, QueueSection  # a lab of many rigs
from labctl.units import Count, Unit

Location = tuple  # a location in a document: keys and list indices, e.g. ("steps", 3, "current_density")

# =================================================================================================
# YAML with line numbers
# =================================================================================================


@dataclass
class Document:
    """A YAML file's data, the 1-based line of every mapping key and list item, and YAML-level problems.

    Parameters
    ----------
    path : str or Path
        The file, as given (used in messages).
    data : Any
        The parsed content.
    lines : dict
        Line of each location, e.g. ``{("steps", 0, "plan"): 12}``; ``()`` is the document's start.
    problems : list of ConfigError
        Problems found while reading, such as duplicate keys.
    """

    path: str | Path
    data: Any = None
    lines: dict[Location, int] = field(default_factory=dict)
    problems: list[ConfigError] = field(default_factory=list)
    values: int = 0  # values built so far, against MAX_VALUES

    def line(self, location: Location) -> int | None:
        """Return the line of ``location``, or of its nearest ancestor that is in the file."""
        for end in range(len(location), -1, -1):
            if location[:end] in self.lines:
                return self.lines[location[:end]]
        return None

    def error(self, location: Location, message: str) -> ConfigError:
        """Return a :class:`ConfigError` for ``location`` in this file."""
        return ConfigError(self.path, self.line(location), dotted(location), message)


# Budgets of the YAML reader: a lab or experiment file has a few hundred values, a dozen levels deep.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32  # nested mappings and lists
MAX_VALUES = 20_000  # keys, items and scalars after aliases are expanded (a "billion laughs" file)


class _RefusedYAML(yaml.MarkedYAMLError):
    """A YAML construct labctl refuses (a tag, too deep a nesting), at its place in the file."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses every explicit tag and nesting deeper than :data:`MAX_DEPTH`.

    SafeLoader would build ``!!binary``, ``!!set`` or ``!!timestamp`` values, and silently keep
    unknown ``!tags``; none belongs in a lab or experiment file. Depth is checked while composing,
    so a 3000-deep file is refused before Python's recursion limit is reached.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            tag = tag.replace("tag:yaml.org,2002:", "!!")[:40]  # as written
            raise _RefusedYAML(None, None, f"the tag {tag} is not allowed: labctl files hold plain values "
                                           f"(text, numbers, lists, mappings), without tags", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _RefusedYAML(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: str | Path) -> Document:
    """Read a YAML file, keeping line numbers; raise ConfigErrors if it cannot be read or parsed.

    Refused, each with its line: bytes that are not UTF-8, control characters, tags, nesting deeper
    than :data:`MAX_DEPTH`, aliases expanding past :data:`MAX_VALUES` values; and files larger than
    :data:`MAX_FILE_BYTES` or that are not regular files (a FIFO or a device would block or never end).
    No message quotes the file's contents beyond a key or a short value.
    """
    document = Document(path)
    text = _read_text(path)
    loader = None
    try:
        loader = StrictLoader(text)  # it composes the nodes; _build turns them into data, noting lines
        node = loader.get_single_node()
        if node is not None:
            document.lines[()] = node.start_mark.line + 1
            document.data = _build(loader, node, (), document)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = ": ".join(p for p in (err.context, err.problem) if p)
        refused = isinstance(err, _RefusedYAML)
        raise ConfigErrors([ConfigError(path, line, None, problem if refused else f"not valid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as err:  # a control character: say where, not what the file holds
        line = text.count("\n", 0, err.position) + 1
        raise ConfigErrors([ConfigError(path, line, None, f"not a text file: control character "
                                                          f"0x{err.character:02x}")]) from None
    except yaml.YAMLError as err:
        raise ConfigErrors([ConfigError(path, None, None, f"not valid YAML: {err}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return document


def _read_text(path: str | Path) -> str:
    """Return the file's text, refusing what is not a small regular UTF-8 text file."""
    try:
        if not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "not a regular file" if Path(path).exists() else "no such file"
            raise ConfigErrors([ConfigError(path, None, None, f"cannot read the file: {what}")])
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigErrors([ConfigError(path, None, None, f"cannot read the file: {err.strerror or err}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigErrors([ConfigError(path, None, None, f"the file is larger than {MAX_FILE_BYTES:,} bytes: "
                                                          f"not a lab or experiment file")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line, column = data.count(b"\n", 0, err.start) + 1, err.start - line_start + 1
        raise ConfigErrors([ConfigError(path, line, None, f"not UTF-8 text: byte 0x{data[err.start]:02x} at column "
                                                          f"{column}; save the file as UTF-8")]) from None


def _build(loader: yaml.SafeLoader, node: yaml.Node, location: Location, document: Document) -> Any:
    """Turn a composed node into Python data, recording the line of every key and item below it."""
    document.values += 1
    if document.values > MAX_VALUES:  # aliases share nodes: a small file can expand without bound
        # On the line of the top-level key being expanded: an aliased node's own mark is its anchor's.
        raise ConfigErrors([ConfigError(document.path, document.line(location[:1]), None,
                                        f"more than {MAX_VALUES:,} values once aliases are expanded "
                                        f"(aliases repeat what they point at)")])
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(loader, node, location, document)
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            document.lines[(*location, index)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*location, index), document))
        return items
    return loader.construct_object(node, deep=True)


def _build_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, location: Location, document: Document) -> dict:
    _refuse_duplicates(loader, node, location, document)
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor) put their pairs first: later ones win
    result = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, Hashable):
            document.problems.append(ConfigError(document.path, line, dotted(location), "keys must be plain text"))
            continue
        document.lines[(*location, key)] = line
        result[key] = _build(loader, value_node, (*location, key), document)
    return result


def _refuse_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, location: Location, document: Document) -> None:
    # PyYAML silently keeps the last of two equal keys; in a lab file that hides a typo or a limit.
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, Hashable) and key in first:
            document.problems.append(ConfigError(
                document.path, line, dotted((*location, key)),
                f"duplicate key {key!r} (first given on line {first[key]}): keep one of them",
            ))
        elif isinstance(key, Hashable):
            first[key] = line


def dotted(location: Location) -> str:
    """Return a location as a dotted field name: ``("steps", 3, "pressure")`` -> ``steps[3].pressure``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# =================================================================================================
# pydantic errors -> located messages
# =================================================================================================


class FieldProblems(ValueError):
    """Raised by a model validator to blame particular fields, so each error points at their lines.

    Parameters
    ----------
    problems : list of (str, tuple of str, or None; str)
        ``(field, message)`` pairs; a tuple is a path into nested fields; ``None`` blames the model.
    """

    def __init__(self, problems: list[tuple[str | None, str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def raise_problems(problems: list[tuple[str | None, str]]) -> None:
    """Raise :class:`FieldProblems` if there are any."""
    if problems:
        raise FieldProblems(problems)


def validate(model: type[BaseModel], document: Document) -> tuple[BaseModel | None, list[ConfigError]]:
    """Validate a document's data with ``model``; return the instance (None if refused) and every problem."""
    errors = list(document.problems)
    if document.data is None:
        return None, [*errors, document.error((), "the file is empty")]
    try:
        instance = model.model_validate(document.data)
    except ValidationError as err:
        problems = translate(err, document.data, model)
        return None, errors + [document.error(location, message) for location, message in problems]
    return instance, errors  # with reading problems (duplicate keys) too, so later checks still run


def translate(err: ValidationError, data: Any, model: type[BaseModel], extra_keys=()) -> list[tuple[Location, str]]:
    """Turn pydantic's errors into ``(location in data, message)``, one per problem, duplicates merged.

    ``extra_keys`` are keys that are allowed beside the model's fields (for unknown-key hints).
    """
    found: dict[Location, list[str]] = {}
    for error in err.errors():
        for location, message in _describe(error, data, model, extra_keys):
            if message not in found.setdefault(location, []):
                found[location].append(message)
    return [(location, " or ".join(messages)) for location, messages in found.items()]


def _describe(error: dict, data: Any, model: type[BaseModel], extra_keys) -> list[tuple[Location, str]]:
    location = _in_data(error["loc"], data, keep_missing=error["type"] == "missing")
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblems):
        return [((*location, *_path(f)) if f else location, message) for f, message in cause.problems]
    if isinstance(cause, Exception):
        return [(location, str(cause))]  # our own messages (units, ranges) are already written for people
    if error["type"] == "extra_forbidden":
        allowed = [*_fields_at(model, location[:-1]), *extra_keys]
        return [(location, _unknown_key(location[-1], allowed))]
    return [(location, _message(error))]


def _path(field: str | tuple[str, ...]) -> tuple[str, ...]:
    return (field,) if isinstance(field, str) else field


def _message(error: dict) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of keys to values, got {value!r}"
    text = error["msg"][0].lower() + error["msg"][1:]
    if kind == "string_type" and isinstance(value, (int, float)):
        return f"{text}, got the number {value!r}: put it in quotes to keep it as written"
    if not isinstance(value, (dict, list)):
        text += f", got {value!r}"
    return text


def _unknown_key(key: Any, allowed: list[str]) -> str:
    guess = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return f"unknown key {key!r}: {hint}(allowed: {', '.join(allowed)})"


def _in_data(loc: tuple, data: Any, keep_missing: bool) -> Location:
    """Return the part of a pydantic location that exists in the data (dropping union member tags)."""
    location, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            if keep_missing and isinstance(node, dict):
                location.append(part)
            break
        location.append(part)
    return tuple(location)


def _fields_at(model: Any, location: Location) -> list[str]:
    """Return the field names of the model found at ``location`` inside ``model`` (best effort)."""
    for part in location:
        model = _member_type(model, part)
    model = _model_in(model)
    return list(model.model_fields) if model is not None else []


def _member_type(annotation: Any, part: Any) -> Any:
    model = _model_in(annotation)
    if model is not None and part in model.model_fields:
        return model.model_fields[part].annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) in (list, tuple) and typing.get_args(candidate):
            return typing.get_args(candidate)[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):  # X, or X | None
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# =================================================================================================
# The lab file
# =================================================================================================


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
    queue: QueueSection | None = None
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


def roles_needed(plan: Callable) -> list[str]:
    """Return the instrument roles a plan cannot run without: its device parameters with no default."""
    return [p.name for p in inspect.signature(plan).parameters.values()
            if p.name in ROLES and p.default is inspect.Parameter.empty]


def experiment_roles(experiment: "Experiment", registry: dict[str, Callable]) -> set[str]:
    """Return every instrument role the experiment's plans take, needed or optional (to record it)."""
    return {p.name for step in experiment.steps for p in inspect.signature(registry[step.plan]).parameters.values()
            if p.name in ROLES}


def check_roles(experiment: "Experiment", lab: LabConfig, registry: dict[str, Callable]) -> list[ConfigError]:
    """Return one error per step that needs an instrument the lab file does not have."""
    errors, present = [], lab.instruments.present()
    source = str(lab.path) if lab.path is not None else f"lab {lab.name!r}"
    for index, step in enumerate(experiment.steps):
        for role in roles_needed(registry[step.plan]):
            if role not in present:
                errors.append(experiment.error(("steps", index, "plan"), (
                    f"step {index + 1} ({step.plan}) needs the {role}, and the lab file {source} has no "
                    f"instruments.{role}: add it there (real or simulated: true), or remove the step")))
    return errors


# =================================================================================================
# The experiment file
# =================================================================================================

ELECTRODE_BY_KIND = {"symmetric": "Li", "tracer": "LiMg", "blocking": "Ni"}
CELL_QUANTITIES = {"thickness": "mm", "electrode_diameter": "mm", "electrode_area": "cm^2"}
CELL_SI_UNITS = {"thickness": "m", "electrode_diameter": "m", "electrode_area": "m^2"}


class Cell(ConfigModel):
    """The cell in the rig: what it is made of and its geometry (SI), recorded with every run."""

    id: Identifier
    kind: Literal["symmetric", "tracer", "blocking"]
    electrolyte: str = "Li6.4La3Zr1.4Ta0.6O12"
    thickness: Annotated[float, Unit("mm", gt=0, le=10)]
    electrode_diameter: Annotated[float | None, Unit("mm", gt=0)] = None
    electrode_area: Annotated[float | None, Unit("cm^2", gt=0)] = None
    electrode_material: str | None = Field(None, description="default by kind: symmetric Li, tracer LiMg, blocking Ni")
    mg_fraction: float | None = Field(None, ge=0, le=1, description="tracer cells only; default 0.10")
    surface: Literal["lithiophobic", "lithiophilic"] = "lithiophobic"
    treatment: str | None = None
    relative_density: float = Field(0.96, gt=0.5, le=1)  # > 0.5 as the simulator requires
    sim: dict[str, bool | int | float | str] | None = Field(None, description="simulator overrides, checked by it")
    _written: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_text(cls, data: Any, handler):
        # Start documents record the quantities as the scientist wrote them, beside the SI values.
        cell = handler(data)
        if isinstance(data, dict):
            cell._written = {k: str(data[k]) for k in CELL_QUANTITIES if data.get(k) is not None}
        return cell

    @model_validator(mode="after")
    def _check(self):
        problems = []
        if self.electrode_diameter is None and self.electrode_area is None:
            problems.append((None, "give the electrode size: electrode_diameter (e.g. 2 mm) or electrode_area (e.g. 0.0314 cm^2)"))
        if self.electrode_diameter is not None and self.electrode_area is not None:
            problems.append(("electrode_area", "give electrode_diameter or electrode_area, not both"))
        if self.mg_fraction is not None and self.kind != "tracer":
            problems.append(("mg_fraction", f"only tracer cells have an Mg fraction, this cell is {self.kind}"))
        raise_problems(problems)
        self.electrode_material = self.electrode_material or ELECTRODE_BY_KIND[self.kind]
        if self.kind == "tracer" and self.mg_fraction is None:
            self.mg_fraction = 0.10
        return self

    @property
    def electrode_area_m2(self) -> float:
        """Get the area of one electrode, m^2: as given, or the disc of the given diameter."""
        if self.electrode_area is not None:
            return self.electrode_area
        return math.pi * (self.electrode_diameter / 2) ** 2

    @property
    def contains_lithium(self) -> bool:
        """Get whether lithium metal is in the cell (Li or Li alloy electrodes, or a tracer's Li counter)."""
        return self.kind == "tracer" or self.electrode_material.startswith("Li")

    def to_metadata(self) -> dict[str, Any]:
        """Return the cell as a JSON-serialisable dict: SI values, their units, and the text as written."""
        written = {
            name: self._written.get(name) or f"{Unit(display).from_si(getattr(self, name)):g} {display}"
            for name, display in CELL_QUANTITIES.items()
            if getattr(self, name) is not None
        }
        return {
            "id": self.id,
            "kind": self.kind,
            "electrolyte": self.electrolyte,
            "thickness": self.thickness,
            "electrode_diameter": self.electrode_diameter,
            "electrode_area": self.electrode_area_m2,
            "electrode_material": self.electrode_material,
            "mg_fraction": self.mg_fraction,
            "surface": self.surface if self.contains_lithium else None,  # a Li surface treatment; none on Ni
            "treatment": self.treatment,
            "relative_density": self.relative_density,
            "sim": dict(self.sim) if self.sim else None,
            "units": dict(CELL_SI_UNITS),
            "as_written": written,
        }


STEP_KEYS = ("plan", "repeat", "label")
MAX_REPEAT = 1000  # runs of one step; each is a bluesky run with its own documents


class Step(BaseModel):
    """One step of an experiment: a plan, how many times to run it, and its keyword arguments.

    The plan's own arguments are the extra keys; :func:`load_experiment` checks them against a model
    built from the plan's signature (:func:`build_step_model`) and stores them, in SI, in ``kwargs``.
    """

    model_config = ConfigDict(extra="allow")

    plan: str
    repeat: Annotated[int, Count(ge=1, le=MAX_REPEAT)] = 1
    label: str | None = None
    _kwargs: dict[str, Any] = PrivateAttr(default_factory=dict)
    _line: int | None = PrivateAttr(None)

    @property
    def kwargs(self) -> dict[str, Any]:
        """Get the plan's keyword arguments: SI values, defaults from the signature included."""
        return dict(self._kwargs)

    @property
    def arguments(self) -> dict[str, Any]:
        """Get the plan's arguments as written in the file."""
        return dict(self.model_extra or {})

    @property
    def line(self) -> int | None:
        """Get the line of the step in its file."""
        return self._line


class Guard(ConfigModel):
    """What a plating step does when one condition leaves its band (see ``plans.guards``)."""

    action: Literal["pause", "end"]
    resume_after: Annotated[float, Unit("min", gt=0)] = 600.0
    give_up_after: Annotated[float, Unit("h", gt=0)] = 7200.0


class TemperatureGuard(Guard):
    band: Annotated[float, Unit("K", gt=0, le=50)]  # a difference: "2 K", not "2 degC"


class PressureGuard(Guard):
    band: Annotated[float, Unit("MPa", gt=0)]


class Guards(ConfigModel):
    """The experiment's guards: chamber temperature, stack pressure, potentiostat compliance."""

    temperature: TemperatureGuard | None = None
    pressure: PressureGuard | None = None
    compliance: Guard | None = None


class Experiment(ConfigModel):
    """An experiment file: the cell, the guards of its steps, and the steps to run on it, in order."""

    name: Identifier
    description: str | None = None
    lab: str | None = Field(None, description="lab file, relative to this file")
    cell: Cell
    guards: Guards | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1,
                             description="the simulators' random seed for this experiment (default: the lab file's)")
    steps: list[Step] = Field(min_length=1)
    _document: Document | None = PrivateAttr(None)

    @property
    def lab_path(self) -> Path | None:
        """Get the lab file's path, resolved against the experiment file's folder."""
        if self.lab is None:
            return None
        folder = Path(self._document.path).parent if self._document is not None else Path()
        return folder / self.lab

    def to_metadata(self) -> dict[str, Any]:
        """Return the cell metadata for bluesky start documents (see :meth:`Cell.to_metadata`)."""
        return self.cell.to_metadata()

    def error(self, location: Location, message: str) -> ConfigError:
        """Return a ConfigError located in this experiment's file (line unknown if built in code)."""
        if self._document is not None:
            return self._document.error(location, message)
        return ConfigError(None, None, dotted(location), message)


# =================================================================================================
# Step models generated from plan signatures
# =================================================================================================

# The runner passes these from the cell metadata and the guards section (labctl.runner.runner_arguments).
RUNNER_FILLED = {"electrode_area", "thickness", "cell_kind", "contains_lithium", "guards", "lead_resistances"}


@functools.cache
def build_step_model(plan: Callable) -> type[BaseModel]:
    """Return a pydantic model of the YAML arguments of ``plan``, generated from its signature.

    Every keyword-only parameter except ``md`` and :data:`RUNNER_FILLED` becomes a field with the
    parameter's type (``Annotated[float, Unit(...)]`` takes quantity text) and default, and its
    description from the numpydoc "Parameters" section. Positional parameters are devices.
    """
    hints = typing.get_type_hints(plan, include_extras=True)
    docs = parameter_docs(plan)
    fields = {}
    for parameter in inspect.signature(plan).parameters.values():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or parameter.name == "md" or parameter.name in RUNNER_FILLED:
            continue
        if parameter.name in STEP_KEYS:
            raise TypeError(f"plan {plan.__name__}: argument {parameter.name!r} clashes with a step key {STEP_KEYS}")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (hints.get(parameter.name, Any), Field(default, description=docs.get(parameter.name)))
    return create_model(
        f"{plan.__name__}_step", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), __doc__=inspect.getdoc(plan), **fields
    )


def parameter_docs(func: Callable) -> dict[str, str]:
    """Return each parameter's description from a numpydoc "Parameters" section (``a, b : float`` too)."""
    lines = (inspect.getdoc(func) or "").splitlines()
    docs: dict[str, str] = {}
    names: list[str] = []
    section = None
    for index, line in enumerate(lines):
        underline = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if line.strip() and underline and set(underline) == {"-"}:
            section, names = line.strip(), []
        elif section != "Parameters" or not line.strip() or set(line.strip()) == {"-"}:
            continue
        elif not line[0].isspace():
            names = [name.strip() for name in line.split(":")[0].split(",")]
            docs.update({name: "" for name in names})
        else:
            docs.update({name: f"{docs[name]} {line.strip()}".strip() for name in names})
    return docs


def _step_arguments(raw: dict, registry: dict[str, Callable]) -> tuple[dict | None, list[tuple[Location, str]]]:
    """Validate one step's plan arguments; return their SI values (or None) and the problems."""
    name = raw["plan"]
    if name not in registry:
        known = ", ".join(sorted(registry)) or "(none)"
        return None, [(("plan",), f"unknown plan {name!r}: known plans are {known}")]
    model = build_step_model(registry[name])
    arguments = {k: v for k, v in raw.items() if k not in STEP_KEYS}
    try:
        return model.model_validate(arguments).model_dump(), []
    except ValidationError as err:
        return None, translate(err, arguments, model, extra_keys=STEP_KEYS)


def _check_steps(document: Document, registry: dict[str, Callable]) -> tuple[dict[int, dict], list[ConfigError]]:
    """Check every step's arguments against its plan; the step headers are the Experiment model's job."""
    steps = document.data.get("steps") if isinstance(document.data, dict) else None
    if not isinstance(steps, list):
        return {}, []
    arguments, errors = {}, []
    for index, raw in enumerate(steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("plan"), str):
            continue
        values, problems = _step_arguments(raw, registry)
        if values is not None:  # the rules that need no lab: sweep order, GEIS amplitude, staircase, sizes
            problems = safety.plan_problems(raw["plan"], values)
        errors += [document.error(("steps", index, *location), message) for location, message in problems]
        if values is not None:
            arguments[index] = values
    return arguments, errors


# =================================================================================================
# Cross-checks against the lab, and loading
# =================================================================================================


def check_against_lab(experiment: Experiment, lab: LabConfig) -> list[ConfigError]:
    """Return everything the lab's limits, its instruments or the cell's lithium forbid (:mod:`labctl.safety`).

    Each step's plan call (setpoints, sweeps on the instrument the step runs on, GEIS amplitudes,
    sizes), the guards, and the lab's own defaults for this cell (located in the lab file).
    """
    errors = []
    for index, step in enumerate(experiment.steps):
        for location, message in safety.plan_problems(step.plan, step.kwargs, lab, experiment.cell):
            errors.append(experiment.error(("steps", index, *location), message))
    steps = [(step.plan, step.kwargs) for step in experiment.steps]
    errors += [experiment.error(location, message)
               for location, message in safety.guard_problems(experiment.guards, steps, experiment.cell)]
    for location, message in safety.lab_default_problems(lab, experiment.cell):
        document = lab._document
        errors.append(document.error(location, message) if document is not None
                      else ConfigError(None, None, dotted(location), message))
    return errors


def load_lab(path: str | Path) -> LabConfig:
    """Load and validate a lab file.

    Raises
    ------
    ConfigErrors
        Every problem in the file, each with its line and field.
    """
    document = read_yaml(path)
    if document.data is not None and (not isinstance(document.data, dict) or "instruments" not in document.data):
        # Say so without quoting it: a lab: reference may point at any file, a private one too.
        raise ConfigErrors([*document.problems, document.error((), "not a lab file: it has no instruments section "
                                                                   "(see configs/lab-sim.yaml)")])
    lab, errors = validate(LabConfig, document)
    if errors:
        raise ConfigErrors(errors)
    lab._path = Path(path)
    lab._document = document
    return lab


def load_experiment(
    path: str | Path, lab: LabConfig | None = None, registry: dict[str, Callable] | None = None
) -> Experiment:
    """Load and validate an experiment file, and check it against ``lab``'s limits if given.

    Parameters
    ----------
    path : str or Path
        The experiment file.
    lab : LabConfig, optional
        The lab it will run on; its limits are checked with :func:`check_against_lab`.
    registry : dict, optional
        Plan names to plan functions (default ``plans.PLANS``).

    Raises
    ------
    ConfigErrors
        Every problem in the file, each with its line and field.
    """
    if registry is None:
        from plans import PLANS as registry  # lazily: labctl.config must import without the plans
    document = read_yaml(path)
    experiment, errors = validate(Experiment, document)
    arguments, step_errors = _check_steps(document, registry)
    errors += step_errors
    if experiment is not None and not step_errors:
        _attach(experiment, document, arguments)
        errors += _lab_file_problems(experiment)
        if lab is not None:  # the limits of an instrument the lab lacks cannot be checked: say it is missing
            errors += check_roles(experiment, lab, registry) or check_against_lab(experiment, lab)
    if errors:
        raise ConfigErrors(_unique(errors))
    return experiment


def _unique(errors: list[ConfigError]) -> list[ConfigError]:
    """Return the errors without repeats (a rule checked with and without the lab says the same twice)."""
    return list({str(error): error for error in errors}.values())


def _attach(experiment: Experiment, document: Document, arguments: dict[int, dict]) -> None:
    experiment._document = document
    for index, step in enumerate(experiment.steps):
        step._kwargs = arguments[index]
        step._line = document.line(("steps", index))


def _lab_file_problems(experiment: Experiment) -> list[ConfigError]:
    if experiment.lab_path is None or experiment.lab_path.is_file():
        return []
    return [experiment.error(("lab",), f"no lab file at {experiment.lab_path} (paths are relative to this file)")]
