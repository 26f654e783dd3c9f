"""Units at the edge: people write ``0.5 mA/cm^2``; code gets SI floats.

A plan or config field declares its quantity once, as ``Annotated[float, Unit("mA/cm^2", gt=0)]``.
:func:`to_si` parses a string (or a pint quantity) with pint, checks its dimension and range in the
display unit, and returns the value in SI base units. The same marker gives ``labctl plans`` and
error messages their units, so documentation cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pint

ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
ureg.formatter.default_format = "~P"


class UnitError(ValueError):
    """A value with the wrong unit, no unit, or outside its allowed range."""


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
        low = f"> {self.gt:g}" if self.gt is not None else f">= {self.ge:g}" if self.ge is not None else ""
        high = f"< {self.lt:g}" if self.lt is not None else f"<= {self.le:g}" if self.le is not None else ""
        parts = [p for p in (low, high) if p]
        return f"{' and '.join(parts)} {self.display}" if parts else f"any value in {self.display}"

    def to_si(self, value: Any) -> float:
        """Return ``value`` in SI base units, after checking its dimension and range."""
        quantity = parse_quantity(value, self.display)
        shown = quantity.to(self.display).magnitude
        if not self._in_range(shown):
            written = value.strip() if isinstance(value, str) else f"{quantity:~P}"  # as the user wrote it
            raise UnitError(f"{written} is out of range: allowed {self.range_text()}")
        return float(quantity.to(self.si_unit).magnitude)

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


def parse_quantity(value: Any, display: str) -> pint.Quantity:
    """Parse ``value`` into a pint quantity with the dimension of ``display``."""
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
        try:
            quantity = ureg.Quantity(value.strip())
        except (pint.errors.PintError, ValueError, TypeError, SyntaxError, AttributeError) as err:
            raise UnitError(f"cannot read {value!r} as a quantity in {display}: {err}") from None
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
