"""Units at the edge: quantity text in, SI floats out, and the same marker inside pydantic models."""

import math
from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from labctl.units import Unit, UnitError, si


@pytest.mark.parametrize(
    "unit, text, expected",
    [
        (Unit("mA/cm^2"), "0.5 mA/cm^2", 5.0),  # A/m^2
        (Unit("MPa"), "5 MPa", 5e6),
        (Unit("MPa"), "50 bar", 5e6),  # any unit of the same dimension
        (Unit("degC"), "30 degC", 303.15),
        (Unit("degC"), "300 K", 300.0),
        (Unit("min"), "30 min", 1800.0),
        (Unit("h"), "24 h", 86400.0),
        (Unit("Hz"), "7 MHz", 7e6),
        (Unit("Hz"), "500 mHz", 0.5),
        (Unit("mAh/cm^2"), "5 mAh/cm^2", 180000.0),  # C/m^2
        (Unit("cm^2"), "0.785 cm^2", 7.85e-5),
        (Unit("V"), "-10 V", -10.0),
        (Unit(""), 0.1, 0.1),  # dimensionless: a plain number is fine
        (Unit(""), "10 %", 0.1),
    ],
)
def test_quantity_text_becomes_si(unit, text, expected):
    assert math.isclose(unit.to_si(text), expected, rel_tol=1e-12)


def test_from_si_returns_the_display_unit():
    assert math.isclose(Unit("degC").from_si(303.15), 30.0)
    assert math.isclose(Unit("mA/cm^2").from_si(5.0), 0.5)


def test_wrong_dimension_is_refused():
    with pytest.raises(UnitError, match="wrong unit: expected something convertible to MPa"):
        Unit("MPa").to_si("5 mA")


@pytest.mark.parametrize("value", [5, 5.0, "5"])
def test_a_number_without_unit_is_refused_with_an_example(value):
    with pytest.raises(UnitError, match="has no unit: write it with one, e.g. '5(.0)? MPa'"):
        Unit("MPa").to_si(value)


def test_out_of_range_names_the_bounds_in_the_display_unit():
    unit = Unit("mA/cm^2", gt=0, le=100)
    with pytest.raises(UnitError, match=r"out of range: allowed > 0 and <= 100 mA/cm\^2"):
        unit.to_si("250 mA/cm^2")
    with pytest.raises(UnitError, match="out of range"):
        unit.to_si("0 mA/cm^2")
    assert unit.to_si("100 mA/cm^2") == pytest.approx(1000.0)  # the bound itself is allowed


def test_bounds_apply_in_the_display_unit_whatever_unit_is_written():
    # 0.3 A/cm^2 is 300 mA/cm^2: over the 100 mA/cm^2 bound although the number is small
    with pytest.raises(UnitError, match="out of range"):
        Unit("mA/cm^2", le=100).to_si("0.3 A/cm^2")


@pytest.mark.parametrize("value", ["fast", "5 furlongs per fortnight squared", True, None, [1, 2]])
def test_unreadable_values_are_refused(value):
    with pytest.raises(UnitError):
        Unit("MPa").to_si(value)


def test_range_text():
    assert Unit("MPa", ge=0, le=50).range_text() == ">= 0 and <= 50 MPa"
    assert Unit("s").range_text() == "any value in s"


def test_si_helper():
    assert si("5 MPa") == 5e6


class Model(BaseModel):
    pressure: Annotated[float, Unit("MPa", ge=0, le=50)]
    capacity: Annotated[float | None, Unit("mAh/cm^2", gt=0)] = None


def test_unit_marker_validates_inside_pydantic_models():
    model = Model(pressure="5 MPa", capacity="5 mAh/cm^2")
    assert model.pressure == 5e6 and model.capacity == pytest.approx(180000.0)


def test_optional_quantity_accepts_none():
    assert Model(pressure="0 MPa", capacity=None).capacity is None


def test_unit_errors_become_validation_errors_with_the_units_message():
    with pytest.raises(ValidationError) as info:
        Model(pressure="60 MPa")
    (error,) = info.value.errors()
    assert error["loc"] == ("pressure",)
    assert "out of range: allowed >= 0 and <= 50 MPa" in str(error["ctx"]["error"])
