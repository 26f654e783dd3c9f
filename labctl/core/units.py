"""Units at the edge: people write ``0.5 mA/cm^2``; code gets SI floats.

A plan or config field declares its quantity once, as ``Annotated[float, Unit("mA/cm^2", gt=0)]``.
:func:`to_si` parses a string (or a pint quantity) with pint, checks its dimension and range in the
display unit, and returns the value in SI base units. The same marker gives ``labctl plans`` and
error messages their units, so documentation cannot drift from the code.
"""

from __future__ import annotations

import math
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any


def _import_pint():
    """Import pint without the ``dask.base`` it imports whenever dask is installed (~0.5 s of a start).

    pint imports dask only to give its quantities dask's ``compute``/``persist``; labctl never
    hands pint a dask array. An entry of None in ``sys.modules`` is how Python says "not
    installed", and it is there only while pint imports. If dask is already imported, pint uses it.
    """
    hide = "dask" not in sys.modules
    if hide:
        sys.modules["dask"] = None  # type: ignore[assignment]
    try:
        import pint
    finally:
        if hide:
            del sys.modules["dask"]
    return pint


if typing.TYPE_CHECKING:
    import pint
else:
    pint = _import_pint()



def _registry() -> pint.UnitRegistry:
    """pint's registry, its parsed definitions cached on disk by pint (``cache_folder``).

    Parsing pint's definition files costs ~1 s at every start of ``labctl``; loading them from
    pint's cache ~0.2 s. An unusable cache (an unwritable home, a file half written by another
    process) costs only the parse.
    """
    try:
        return pint.UnitRegistry(autoconvert_offset_to_baseunit=True, cache_folder=":auto:")
    except Exception:  # noqa: BLE001 - any failure of the cache: parse the definitions afresh
        return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


ureg = _registry()
ureg.formatter.default_format = "~P"


class UnitError(ValueError):
    """A value with the wrong unit, no unit, or outside its allowed range."""


def _bound(value: float) -> str:
    """Return a bound as people read it: ``35,000,000`` rather than ``3.5e+07``."""
    return f"{int(value):,}" if abs(value) >= 1e5 and value == int(value) else f"{value:g}"


@dataclass(frozen=True)
class Unit:
    """Declare a quantity: its display unit and, optionally, bounds given in that unit.

    Parameters
    ----------
    display : str
        The unit people write and read, e.g. ``"mA/cm^2"``, ``"MPa"``, ``"degC"``, ``"min"``.
    gt, ge, lt, le : float, optional
        Bounds in the display unit.
    """

    display: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @property
    def si_unit(self) -> pint.Unit:
        return ureg.Quantity(1, self.display).to_base_units().units

    def range_text(self) -> str:
        low = f"> {_bound(self.gt)}" if self.gt is not None else f">= {_bound(self.ge)}" if self.ge is not None else ""
        high = f"< {_bound(self.lt)}" if self.lt is not None else f"<= {_bound(self.le)}" if self.le is not None else ""
        parts = [p for p in (low, high) if p]
        return f"{' and '.join(parts)} {self.display}" if parts else f"any value in {self.display}"

    def to_si(self, value: Any) -> float:
        """Return ``value`` in SI base units, after checking its dimension, finiteness and range."""
        quantity = parse_quantity(value, self.display)
        shown = float(quantity.to(self.display).magnitude)
        written = value.strip() if isinstance(value, str) else f"{quantity:~P}"  # as the user wrote it
        if isinstance(value, str) and normalise(written) != written:
            written += f" (read as {normalise(written)})"
        if not math.isfinite(shown):
            raise UnitError(f"{written} is not a finite quantity: allowed {self.range_text()}")
        if not self._in_range(shown):
            raise UnitError(f"{written} is out of range: allowed {self.range_text()}")
        # 15 significant digits: "10 uHz" is 1e-05 Hz, not 1.0000000000000001e-05, which an instrument's
        # own range check (10 uHz and up) would refuse; text has fewer digits than that anyway.
        return float(f"{float(quantity.to(self.si_unit).magnitude):.15g}")

    def si_problem(self, value: float) -> str | None:
        """Return why an SI value (as plans take them) is refused: not finite, or outside the bounds; else None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number in {self.si_unit:~P}"
        if not math.isfinite(value) or not self._in_range(self.from_si(value)):
            return f"{value:g} {self.si_unit:~P} (SI) is out of range: allowed {self.range_text()}"
        return None

    def from_si(self, value: float) -> float:
        """Return an SI value in the display unit."""
        return float(ureg.Quantity(value, self.si_unit).to(self.display).magnitude)

    def __get_pydantic_core_schema__(self, source_type: Any, handler: Any) -> Any:
        """Let pydantic validate ``Annotated[float, Unit(...)]`` (and ``float | None``) directly.

        The text is turned into SI by :meth:`to_si` before pydantic's own float check, so config
        models and plan signatures share one marker and one parser. ``None`` passes through for
        optional quantities.
        """
        from pydantic_core import core_schema  # lazily: units stays importable without pydantic

        def validate(value: Any) -> Any:
            return None if value is None else self.to_si(value)

        return core_schema.no_info_before_validator_function(validate, handler(source_type))

    def _in_range(self, x: float) -> bool:
        return not (
            (self.gt is not None and not x > self.gt)
            or (self.ge is not None and not x >= self.ge)
            or (self.lt is not None and not x < self.lt)
            or (self.le is not None and not x <= self.le)
        )


@dataclass(frozen=True)
class Count:
    """Declare a whole number (a count) and its bounds: ``Annotated[int, Count(ge=1, le=1000)]``.

    Stricter than pydantic's ``int``: ``true`` is not 1, ``2.0`` is not 2, and a count written as text
    is read with the same look-alike normalisation as a quantity (``\u22123`` is -3, then refused).
    """

    ge: int = 1
    le: int | None = None

    def range_text(self) -> str:
        return f"a whole number from {self.ge} to {self.le}" if self.le is not None else f"a whole number >= {self.ge}"

    def to_int(self, value: Any) -> int:
        """Return ``value`` as an int after checking it is a whole number inside the bounds."""
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", normalise(value).strip()):
            number = int(normalise(value).strip())
        if number is None:
            raise UnitError(f"{value!r} is not a whole number: allowed {self.range_text()}")
        if number < self.ge or (self.le is not None and number > self.le):
            raise UnitError(f"{number} is out of range: allowed {self.range_text()}")
        return number

    def __get_pydantic_core_schema__(self, source_type: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.to_int, handler(source_type))


# Characters that look like ASCII ones and arrive by pasting from papers and word processors. In a
# quantity each is read as the ASCII it looks like (a Unicode minus was silently read as plus by
# pint); any other non-ASCII character in a quantity is refused (see parse_quantity).
LOOK_ALIKES = {
    "\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-",  # minus, figure/en dash
    "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",  # no-break and thin spaces
    "\u00b5": "u", "\u03bc": "u",  # micro sign and Greek mu: the micro prefix
    "\u00b7": "*", "\u22c5": "*",  # middle dot, dot operator
    "\u00b0C": "degC", "\u2103": "degC", "\u00b0F": "degF",  # degree sign
    "\u03a9": "ohm", "\u2126": "ohm",
}
SUPERSCRIPTS = str.maketrans("\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079", "-0123456789")
# A number, then a unit expression without numbers except exponents: pint evaluates what it reads,
# and '9**9**9 s' would never finish.
QUANTITY_TEXT = re.compile(
    r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?"
    r"(\s*[A-Za-z%(][A-Za-z_%()]*(\s*(\^|\*\*)\s*\(?-?\d{1,2}\)?)?(\s*[*/ ]\s*\(?[A-Za-z%][A-Za-z_%()]*(\s*(\^|\*\*)\s*\(?-?\d{1,2}\)?)?)*)?\s*"
)
MAX_QUANTITY_TEXT = 64  # characters


def normalise(text: str) -> str:
    """Return ``text`` with the look-alike characters of :data:`LOOK_ALIKES` (and superscript exponents) in ASCII."""
    for look_alike, ascii_text in LOOK_ALIKES.items():
        text = text.replace(look_alike, ascii_text)
    return re.sub("[\u207b\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+", lambda m: "^" + m.group().translate(SUPERSCRIPTS), text)


def _read_text(value: str, display: str) -> pint.Quantity:
    text = normalise(value).strip()
    foreign = next((c for c in text if not c.isascii()), None)
    if foreign is not None:
        raise UnitError(f"{value!r} contains {foreign!r} (U+{ord(foreign):04X}), which labctl does not read in a "
                        f"quantity: write it in ASCII, e.g. '1 {display}'")
    if re.match(r"[+-]?(inf|nan)", text, re.IGNORECASE):
        raise UnitError(f"{value!r} is not a finite quantity: write a number, e.g. '1 {display}'")
    if len(text) > MAX_QUANTITY_TEXT or not QUANTITY_TEXT.fullmatch(text):
        raise UnitError(f"cannot read {value[:MAX_QUANTITY_TEXT]!r} as a quantity in {display}: write one number "
                        f"and a unit, e.g. '1 {display}'")
    try:
        return ureg.Quantity(text)
    except (pint.errors.PintError, ValueError, TypeError, SyntaxError, AttributeError, OverflowError) as err:
        raise UnitError(f"cannot read {value!r} as a quantity in {display}: {err}") from None


def parse_quantity(value: Any, display: str) -> pint.Quantity:
    """Parse ``value`` into a pint quantity with the dimension of ``display``.

    Text is normalised first (:func:`normalise`: a pasted Unicode minus is a minus) and must be one
    number and a unit; ``inf`` and ``nan`` are refused by :meth:`Unit.to_si`.
    """
    expected = ureg.Quantity(1, display)
    if isinstance(value, bool):
        raise UnitError(f"expected a quantity in {display}, got {value!r}")
    if isinstance(value, (int, float)):
        if not expected.dimensionless:
            raise UnitError(f"{value!r} has no unit: write it with one, e.g. '{value} {display}'")
        return ureg.Quantity(value)
    if isinstance(value, pint.Quantity):
        quantity = value
    elif isinstance(value, str):
        quantity = _read_text(value, display)
    else:
        raise UnitError(f"expected a quantity in {display}, got {value!r}")
    if quantity.unitless and not expected.dimensionless:  # a quoted number, e.g. "5"
        raise UnitError(f"{value!r} has no unit: write it with one, e.g. '{value} {display}'")
    if quantity.dimensionality != expected.dimensionality:
        raise UnitError(
            f"{value!r} has the wrong unit: expected something convertible to {display}"
        )
    return quantity


def si(text: str) -> float:
    """Return a quantity written as text (``"5 MPa"``) in SI base units, for code and tests."""
    return float(ureg.Quantity(text).to_base_units().magnitude)


# The SI units labctl stores values in, by name: what a start document's ``plan_args_units`` says.
SI_NAMES = ("A/m^2", "C/m^2", "s", "K", "m^2", "m", "Pa", "V", "A", "C", "Hz", "ohm", "S/m", "eV")


def si_unit_name(display: str) -> str:
    """The name of the SI unit a value written in ``display`` is stored in (``"mA/cm^2"`` -> ``"A/m^2"``).

    A dimensionless display unit (``%``) stores a fraction: ``"1"``.
    """
    dimensionality = ureg.Quantity(1, display).dimensionality
    if not dimensionality:
        return "1"
    return next((name for name in SI_NAMES if ureg.Quantity(1, name).dimensionality == dimensionality),
                format(ureg.Quantity(1, display).to_base_units().units, "~"))


@dataclass(frozen=True)
class LabLimit:
    """Marks a plan argument as a setpoint that the lab's limit on ``quantity`` bounds, beside its unit.

    ``Annotated[float, Unit("mA/cm^2", gt=0), LabLimit("current")]``: the lab-limit check
    (:func:`labctl.safety.setpoint_problems`) finds the argument by this marker, as the step models
    find its :class:`Unit`, so an argument of any name is checked. ``quantity`` is one of
    :data:`LAB_LIMITS`.
    """

    quantity: str

    def __post_init__(self):
        if self.quantity not in LAB_LIMITS:
            raise ValueError(f"LabLimit({self.quantity!r}): the lab limits are {', '.join(LAB_LIMITS)}")


#: What a lab file limits: the chamber's temperature range, the rig's pressure range, the
#: potentiostat's current limit (for a current density, on the cell's electrode) and voltage window.
LAB_LIMITS = ("temperature", "pressure", "current", "voltage")


def find_marker(annotation: Any, kind: type):
    """Return the first ``kind`` (``Unit``, ``LabLimit``) declared in an annotation (``float``,
    ``float | None``, ``list[float]``), or None."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, kind):
            return meta
    for argument in typing.get_args(annotation):
        marker = find_marker(argument, kind)
        if marker is not None:
            return marker
    return None


def find_unit(annotation: Any) -> Unit | None:
    """Return the :class:`Unit` declared in an annotation (``float``, ``float | None``, ``list[float]``)."""
    return find_marker(annotation, Unit)


def lab_limits(func) -> dict[str, str]:
    """Return each parameter of ``func`` whose annotation declares a :class:`LabLimit`, with its quantity."""
    hints = typing.get_type_hints(func, include_extras=True)
    found = {name: find_marker(hint, LabLimit) for name, hint in hints.items()}
    return {name: limit.quantity for name, limit in found.items() if limit is not None}
