"""Units at the edge: quantity text in, SI floats out, and the same marker inside pydantic models."""

import math
from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from labctl.core.units import Count, Unit, UnitError, si


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


# ---- look-alike characters, finiteness, expressions, counts (issue 11) ---------------------------
@pytest.mark.parametrize("text, expected", [
    ("\u221230 min", -1800.0),  # U+2212 MINUS SIGN, as pasted from a paper: once read as plus
    ("\u201330 min", -1800.0),  # en dash
    ("\u201230 min", -1800.0),  # figure dash
    ("30\u00a0min", 1800.0),  # no-break space
    ("30\u202fmin", 1800.0),  # narrow no-break space
    ("500 \u00b5s", 0.0005),  # micro sign
    ("500 \u03bcs", 0.0005),  # Greek mu
])
def test_look_alike_characters_read_as_the_ascii_they_look_like(text, expected):
    assert math.isclose(Unit("min").to_si(text), expected, rel_tol=1e-12)


@pytest.mark.parametrize("unit, text, expected", [
    (Unit("mA/cm^2"), "0.5 mA/cm\u00b2", 5.0),
    (Unit("mA/cm^2"), "0.5 mA\u00b7cm\u207b\u00b2", 5.0),  # middle dot and superscript minus two
    (Unit("degC"), "30 \u00b0C", 303.15),
    (Unit("degC"), "30 \u2103", 303.15),
    (Unit("mm"), "5 \u00b5m", 5e-6),
])
def test_superscripts_degree_and_dot_signs_are_read(unit, text, expected):
    assert math.isclose(unit.to_si(text), expected, rel_tol=1e-12)


def test_a_normalised_value_out_of_range_says_how_it_was_read():
    with pytest.raises(UnitError, match=r"^\u221230 min \(read as -30 min\) is out of range: allowed > 0 min$"):
        Unit("min", gt=0).to_si("\u221230 min")


@pytest.mark.parametrize("text", ["\uff15 MPa", "5 MPa\u2014", "5 \u5146Pa", "5\u200bMPa"])
def test_other_non_ascii_characters_are_refused_naming_them(text):
    with pytest.raises(UnitError, match=r"\(U\+[0-9A-F]{4}\), which labctl does not read in a quantity"):
        Unit("MPa").to_si(text)


@pytest.mark.parametrize("text", ["inf h", "-inf h", "nan h", "NaN h", "Infinity h", "1e999 h", "-1e999 h"])
def test_infinite_and_nan_quantities_are_refused(text):
    with pytest.raises(UnitError, match="is not a finite quantity"):
        Unit("h", gt=0).to_si(text)


@pytest.mark.parametrize("text", ["9**9**9 s", "2**10 s", "(5) s", "5 s + 3 s", "1_000 s", "x" * 65 + " s"])
def test_only_a_number_and_a_unit_are_evaluated(text):
    with pytest.raises(UnitError, match="write one number and a unit"):
        Unit("s").to_si(text)  # pint evaluates expressions: 9**9**9 never finished


def test_nan_and_inf_floats_are_refused_too():
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(UnitError, match="not a finite quantity"):
            Unit("").to_si(value)


@pytest.mark.parametrize("value, expected", [(1, 1), (10_000, 10_000), ("7", 7), ("\u22123", None), (0, None),
                                             (10_001, None), (True, None), (2.0, None), (2.5, None), ("2.0", None),
                                             (None, None), ("1" * 30, None)])
def test_counts_are_whole_numbers_inside_their_bounds(value, expected):
    count = Count(ge=1, le=10_000)
    if expected is None:
        with pytest.raises(UnitError, match="allowed a whole number from 1 to 10000"):
            count.to_int(value)
    else:
        assert count.to_int(value) == expected


def test_counts_inside_pydantic_models():
    class Model(BaseModel):
        repeats: Annotated[int, Count(ge=1, le=5)] = 1

    assert Model(repeats=5).repeats == 5
    with pytest.raises(ValidationError, match="6 is out of range: allowed a whole number from 1 to 5"):
        Model(repeats=6)


def test_large_bounds_are_written_out():
    assert Unit("Hz", gt=0, le=35e6).range_text() == "> 0 and <= 35,000,000 Hz"
    assert Unit("Hz", ge=1e-5).range_text() == ">= 1e-05 Hz"


def test_si_values_are_checked_against_the_display_bounds():
    unit = Unit("mA/cm^2", gt=0, le=100)
    assert unit.si_problem(5.0) is None
    assert unit.si_problem(1001.0) == "1001 A/m² (SI) is out of range: allowed > 0 and <= 100 mA/cm^2"
    assert "out of range" in unit.si_problem(math.nan) and "not a number" in unit.si_problem("5")
