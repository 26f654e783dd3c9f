"""Lab and experiment files: SI models out, and every problem named by file, line and field.

The step checks use the small plans below (the real ones live in ``plans/``, tested separately),
so these tests hold whatever the plans look like; the example files are checked against the real
registry at the end.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path
from typing import Annotated, Literal

import pytest

from labctl.config import (
    RUNNER_FILLED,
    Experiment,
    LabConfig,
    build_step_model,
    check_against_lab,
    load_experiment,
    load_lab,
    parameter_docs,
)
from labctl.core.errors import (
    ConfigError,
    ConfigErrors,
    CurrentOutOfRange,
    LimitError,
    PressureOutOfRange,
    TemperatureOutOfRange,
)
from labctl.core.units import LabLimit, Unit

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
CASES = Path(__file__).resolve().parent / "config_cases"


# ---- dummy plans: the shapes real plans have ----------------------------------------------------
def set_temperature(
    chamber,
    *,
    temperature: Annotated[float, Unit("degC", gt=-273.15, le=1000), LabLimit("temperature")],  # wide: the lab decides
    record_interval: Annotated[float, Unit("s", gt=0)] = 60.0,
    md: dict | None = None,
):
    """Set the chamber temperature.

    Parameters
    ----------
    chamber : TemperatureChamber
        The chamber.
    temperature : float
        Setpoint, K.
    record_interval : float
        How often the chamber is read, s.
    md : dict, optional
        Metadata.
    """
    yield from []


def set_pressure(rig, *, pressure: Annotated[float, Unit("MPa", ge=0, le=100), LabLimit("pressure")],
                 md: dict | None = None):
    yield from []


def rest(potentiostat, *, duration: Annotated[float, Unit("min", gt=0)], sample_interval: Annotated[float, Unit("s", gt=0)] = 10.0, md=None):
    yield from []


def plate(
    potentiostat,
    chamber=None,
    *,
    current_density: Annotated[float, Unit("mA/cm^2", gt=0, le=100), LabLimit("current")],
    electrode_area: Annotated[float, Unit("cm^2", gt=0)],
    cell_kind: str = "symmetric",
    max_capacity: Annotated[float | None, Unit("mAh/cm^2", gt=0)] = None,
    max_duration: Annotated[float, Unit("h", gt=0)] = 86400.0,
    direction: Literal["plate", "strip"] = "plate",
    reverse_after: bool = False,
    points_per_decade: int = 10,
    md: dict | None = None,
):
    """Plate lithium.

    Parameters
    ----------
    potentiostat : PotentiostatChannel
        The channel.
    current_density : float
        Plating current density, A/m^2
        (YAML: e.g. ``0.5 mA/cm^2``).
    electrode_area : float
        Filled in by the runner.
    max_capacity, max_duration : float, optional
        Stop limits.

    Returns
    -------
    str
        Why it stopped.
    """
    yield from []


REGISTRY = {"set_temperature": set_temperature, "set_pressure": set_pressure, "rest": rest, "plate": plate}


# ---- helpers ------------------------------------------------------------------------------------
def write(tmp_path: Path, text: str, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(load, *args, **kwargs) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as info:
        load(*args, **kwargs)
    return list(info.value)


def located(errors: list[ConfigError]) -> set[tuple[str, int]]:
    return {(e.field, e.line) for e in errors}


@pytest.fixture(scope="module")
def lab() -> LabConfig:
    return load_lab(CONFIGS / "lab-sim.yaml")


LAB = """\
name: lab-test
simulated: true
seed: 7
instruments:
  potentiostat:
    kind: biologic-sp200
    address: sim
    current_limit: 10 mA
    voltage_window: [-10 V, 10 V]
  chamber:
    kind: sim
    address: sim
    temperature_range: [-40 degC, 200 degC]
    safe_setpoint: 25 degC
  rig:
    kind: sim
    address: sim
    area: 0.785 cm^2
    pressure_range: [0 MPa, 20 MPa]
"""

EXPERIMENT = """\
name: test
cell:
  id: LLZTO-T1
  kind: symmetric
  thickness: 1.2 mm
  electrode_diameter: 2 mm
steps:
  - plan: set_temperature
    temperature: 30 degC
  - plan: plate
    label: first plating
    repeat: 2
    current_density: 0.5 mA/cm^2
    max_capacity: 5 mAh/cm^2
"""


# ---- errors -------------------------------------------------------------------------------------
def test_config_error_is_one_line_naming_file_line_and_field():
    error = ConfigError("configs/x.yaml", 14, "steps[3].current_density", "25 mA/cm^2 is out of range")
    assert str(error) == "configs/x.yaml:14: steps[3].current_density: 25 mA/cm^2 is out of range"
    assert str(ConfigError("x.yaml", None, None, "empty")) == "x.yaml: empty"


def test_config_errors_print_one_per_line_in_line_order():
    errors = ConfigErrors([ConfigError("x.yaml", 9, "b", "second"), ConfigError("x.yaml", 2, "a", "first")])
    assert str(errors).splitlines() == ["x.yaml:2: a: first", "x.yaml:9: b: second"]
    assert len(errors) == 2


def test_limit_errors_carry_context_and_name_the_fix():
    error = PressureOutOfRange("rig", requested=25e6, allowed=(0.0, 20e6))
    assert (error.instrument, error.quantity, error.requested, error.allowed) == ("rig", "pressure", 25e6, (0.0, 20e6))
    assert str(error).startswith("rig: pressure 25 MPa is outside the allowed range [0 MPa, 20 MPa]: ")
    assert "lab file" in str(error)
    assert isinstance(error, ValueError) and isinstance(error, LimitError)
    assert "300 degC" in str(TemperatureOutOfRange("chamber", 573.15, (233.15, 473.15)))
    assert "smaller electrode" in str(CurrentOutOfRange("potentiostat", 0.02, 0.01))
    assert "(at most 5)" in str(LimitError("box", "x", 6.0, (None, 5.0)))


# ---- the lab file -------------------------------------------------------------------------------
def test_the_simulated_lab_file_loads_in_si(lab):
    assert lab.name == "lab-sim" and lab.simulated and lab.seed == 20240117
    assert lab.storage.data_dir == "data" and lab.storage.uri is None
    p, c, r = lab.instruments.potentiostat, lab.instruments.chamber, lab.instruments.rig
    assert p.current_limit == pytest.approx(0.010) and p.voltage_window == (-10.0, 10.0)
    assert p.channel == 1 and p.bandwidth == 8
    assert c.temperature_range == pytest.approx((233.15, 473.15))
    assert c.safe_setpoint == pytest.approx(298.15)
    assert c.stability_band == 0.5 and c.stability_hold == 300.0
    assert r.area == pytest.approx(0.785e-4) and r.pressure_range == (0.0, 20e6)
    assert r.band == pytest.approx(0.1e6) and r.on_finish == "hold"


def test_lab_defaults(tmp_path):
    lab = load_lab(write(tmp_path, LAB))
    assert lab.storage.data_dir == "data" and lab.storage.uri is None
    assert lab.instruments.potentiostat.bandwidth == 8
    assert lab.instruments.chamber.stability_hold == 300.0
    assert lab.instruments.rig.on_finish == "hold"


def test_relative_data_dir_is_taken_from_the_working_directory(tmp_path, monkeypatch):
    lab = load_lab(write(tmp_path, LAB))
    monkeypatch.chdir(tmp_path)
    assert lab.storage.data_path == tmp_path.resolve() / "data"


def test_lab_errors_carry_field_and_line(tmp_path):
    text = LAB.replace("current_limit: 10 mA", "current_limit: 10 V").replace(
        "[0 MPa, 20 MPa]", "[20 MPa, 0 MPa]").replace("seed: 7", "seed: seven")
    errors = errors_of(load_lab, write(tmp_path, text))
    assert located(errors) == {
        ("seed", 3),
        ("instruments.potentiostat.current_limit", 8),
        ("instruments.rig.pressure_range", 19),
    }
    assert all(e.path == str(tmp_path / "file.yaml") for e in errors)


def test_a_real_lab_must_name_the_vendor_library_addresses_and_controller_kinds(tmp_path):
    text = LAB.replace("simulated: true", "simulated: false").replace(
        "  rig:\n    kind: sim\n    address: sim", "  rig:\n    kind: mark10-rig\n    address: /dev/ttyUSB0")
    errors = errors_of(load_lab, write(tmp_path, text))
    assert located(errors) == {
        ("instruments.potentiostat", 5),
        ("instruments.potentiostat.address", 7),
        ("instruments.chamber.kind", 11),
        ("instruments.chamber.address", 12),
    }
    assert any("EClib64.dll" in e.message for e in errors)


def test_unknown_controller_kinds_are_refused_with_the_known_ones(tmp_path):
    (error,) = errors_of(load_lab, write(tmp_path, LAB.replace("    kind: sim\n    address: sim\n    temperature",
                                                                 "    kind: eurotherm-9999\n    address: sim\n    temperature")))
    assert (error.field, error.line) == ("instruments.chamber.kind", 11)
    assert "'eurotherm-3200'" in error.message and "'eurotherm-9999'" in error.message


def test_voltage_window_items_are_located_one_by_one(tmp_path):
    text = LAB.replace("voltage_window: [-10 V, 10 V]", "voltage_window:\n      - -10 V\n      - 10 mA")
    (error,) = errors_of(load_lab, write(tmp_path, text))
    assert (error.field, error.line) == ("instruments.potentiostat.voltage_window[1]", 11)
    assert "wrong unit" in error.message


def test_unknown_key_suggests_the_near_miss(tmp_path):
    (error,) = errors_of(load_lab, write(tmp_path, LAB.replace("seed: 7", "seed: 7\nsimulate: false")))
    assert (error.field, error.line) == ("simulate", 4)
    assert "did you mean 'simulated'?" in error.message


def test_duplicate_keys_are_errors(tmp_path):
    (error,) = errors_of(load_lab, write(tmp_path, LAB.replace("seed: 7", "seed: 7\nseed: 8")))
    assert (error.field, error.line) == ("seed", 4)
    assert "duplicate key 'seed' (first given on line 3)" in error.message


def test_malformed_yaml_names_the_parser_line(tmp_path):
    (error,) = errors_of(load_lab, write(tmp_path, "name: x\ninstruments: [a, b\nseed: 1\n"))
    assert error.line == 3 and "not valid YAML" in error.message


def test_empty_and_missing_files(tmp_path):
    (error,) = errors_of(load_lab, write(tmp_path, "# nothing yet\n"))
    assert "empty" in error.message
    (error,) = errors_of(load_lab, tmp_path / "absent.yaml")
    assert "cannot read the file" in error.message and error.line is None


def test_files_that_are_not_small_regular_text_files_are_refused_without_reading_them(tmp_path):
    import os

    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    (error,) = errors_of(load_lab, big)
    assert "larger than 1,000,000 bytes" in error.message
    (error,) = errors_of(load_lab, tmp_path)
    assert error.message == "cannot read the file: a folder"
    os.mkfifo(tmp_path / "fifo.yaml")  # opening it would block until a writer came
    (error,) = errors_of(load_lab, tmp_path / "fifo.yaml")
    assert error.message == "cannot read the file: not a regular file"


def test_a_byte_order_mark_and_windows_line_ends_are_fine(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + LAB.replace("\n", "\r\n").encode())
    assert load_lab(path).name == "lab-test"


def test_aliases_within_the_budget_still_work(tmp_path):
    text = EXPERIMENT + "  - plan: rest\n    duration: &short 10 min\n  - plan: rest\n    duration: *short\n"
    steps = load_experiment(write(tmp_path, text), registry=REGISTRY).steps
    assert steps[2].kwargs["duration"] == steps[3].kwargs["duration"] == 600.0


def test_yaml_anchors_and_merge_keys_still_work(tmp_path):
    text = LAB.replace("  chamber:\n    kind: sim\n    address: sim\n", "  chamber:\n    <<: *sim\n").replace(
        "  potentiostat:\n", "  potentiostat:\n    <<: &sim {kind: sim, address: sim}\n").replace(
        "    kind: biologic-sp200\n", "    kind: biologic-sp200  # overrides the merged kind\n")
    lab = load_lab(write(tmp_path, text))
    assert lab.instruments.chamber.kind == "sim" and lab.instruments.potentiostat.kind == "biologic-sp200"


# ---- the experiment file ------------------------------------------------------------------------
def test_experiment_loads_with_si_step_arguments_and_defaults(tmp_path):
    experiment = load_experiment(write(tmp_path, EXPERIMENT), registry=REGISTRY)
    first, second = experiment.steps
    assert (first.plan, first.repeat, first.label, first.line) == ("set_temperature", 1, None, 8)
    assert first.kwargs == {"temperature": pytest.approx(303.15), "record_interval": 60.0}
    assert (second.plan, second.repeat, second.label, second.line) == ("plate", 2, "first plating", 10)
    assert second.kwargs == {
        "current_density": pytest.approx(5.0),
        "max_capacity": pytest.approx(180000.0),
        "max_duration": 86400.0,
        "direction": "plate",
        "reverse_after": False,
        "points_per_decade": 10,
    }
    assert second.arguments == {"current_density": "0.5 mA/cm^2", "max_capacity": "5 mAh/cm^2"}


def test_cell_defaults_and_area(tmp_path):
    cell = load_experiment(write(tmp_path, EXPERIMENT), registry=REGISTRY).cell
    assert cell.thickness == pytest.approx(1.2e-3) and cell.electrode_diameter == pytest.approx(2e-3)
    assert cell.electrode_area_m2 == pytest.approx(math.pi * 1e-6)
    assert (cell.electrode_material, cell.mg_fraction, cell.surface) == ("Li", None, "lithiophobic")
    assert cell.electrolyte == "Li6.4La3Zr1.4Ta0.6O12" and cell.relative_density == 0.96
    assert cell.contains_lithium


@pytest.mark.parametrize(
    "kind, material, mg_fraction, lithium",
    [("symmetric", "Li", None, True), ("tracer", "LiMg", 0.10, True), ("blocking", "Ni", None, False)],
)
def test_electrode_material_defaults_by_kind(tmp_path, kind, material, mg_fraction, lithium):
    text = EXPERIMENT.replace("kind: symmetric", f"kind: {kind}").replace("electrode_diameter: 2 mm", "electrode_area: 0.0314 cm^2")
    cell = load_experiment(write(tmp_path, text), registry=REGISTRY).cell
    assert (cell.electrode_material, cell.mg_fraction, cell.contains_lithium) == (material, mg_fraction, lithium)
    assert cell.electrode_area_m2 == pytest.approx(3.14e-6)


def test_to_metadata_is_json_with_si_values_and_the_text_as_written(tmp_path):
    metadata = load_experiment(write(tmp_path, EXPERIMENT), registry=REGISTRY).to_metadata()
    assert json.loads(json.dumps(metadata)) == metadata
    assert metadata["id"] == "LLZTO-T1" and metadata["kind"] == "symmetric" and metadata["surface"] == "lithiophobic"
    assert metadata["thickness"] == pytest.approx(1.2e-3)
    assert metadata["electrode_area"] == pytest.approx(math.pi * 1e-6)
    assert metadata["units"]["electrode_area"] == "m^2"
    assert metadata["as_written"] == {"thickness": "1.2 mm", "electrode_diameter": "2 mm"}


def test_metadata_of_a_cell_built_in_code_formats_its_quantities():
    experiment = Experiment.model_validate({
        "name": "code",
        "cell": {"id": "c", "kind": "blocking", "thickness": "1 mm", "electrode_area": "0.5 cm^2"},
        "steps": [{"plan": "rest"}],
    })
    assert experiment.to_metadata()["as_written"] == {"thickness": "1 mm", "electrode_area": "0.5 cm^2"}
    assert experiment.error(("steps", 0), "x").line is None


def test_lab_path_is_relative_to_the_experiment_file(tmp_path):
    write(tmp_path, LAB, "lab.yaml")
    path = write(tmp_path, "lab: lab.yaml\n" + EXPERIMENT, "sub.yaml")
    assert load_experiment(path, registry=REGISTRY).lab_path == tmp_path / "lab.yaml"


def test_a_missing_lab_file_is_reported_on_its_line(tmp_path):
    (error,) = errors_of(load_experiment, write(tmp_path, EXPERIMENT + "lab: nowhere.yaml\n"), registry=REGISTRY)
    assert (error.field, error.line) == ("lab", 15) and "no lab file" in error.message


def test_missing_electrode_size(tmp_path):
    text = EXPERIMENT.replace("  electrode_diameter: 2 mm\n", "")
    (error,) = errors_of(load_experiment, write(tmp_path, text), registry=REGISTRY)
    assert (error.field, error.line) == ("cell", 2) and "give the electrode size" in error.message


def test_both_electrode_diameter_and_area(tmp_path):
    text = EXPERIMENT.replace("  electrode_diameter: 2 mm\n", "  electrode_diameter: 2 mm\n  electrode_area: 0.0314 cm^2\n")
    (error,) = errors_of(load_experiment, write(tmp_path, text), registry=REGISTRY)
    assert (error.field, error.line) == ("cell.electrode_area", 7) and "not both" in error.message


def test_unknown_plan_lists_the_known_plans(tmp_path):
    (error,) = errors_of(load_experiment, write(tmp_path, EXPERIMENT.replace("plan: plate", "plan: plating")), registry=REGISTRY)
    assert (error.field, error.line) == ("steps[1].plan", 10)
    assert error.message == "unknown plan 'plating': known plans are plate, rest, set_pressure, set_temperature"


def test_runner_filled_and_md_arguments_cannot_be_given_in_yaml(tmp_path):
    text = EXPERIMENT + "    electrode_area: 1 cm^2\n    md: {a: 1}\n"
    errors = errors_of(load_experiment, write(tmp_path, text), registry=REGISTRY)
    assert located(errors) == {("steps[1].electrode_area", 15), ("steps[1].md", 16)}
    assert all("unknown key" in e.message for e in errors)


def test_every_problem_in_a_file_is_reported_together(tmp_path):
    text = """\
        name: test
        cell:
          id: LLZTO-T1
          kind: symetric
          thickness: 20 mm
          electrode_diameter: 2 mm
          colour: blue
        steps:
          - plan: set_temperature
            temperature: 30
          - plan: plate
            current_density: 0.5 mA
            max_duration: 2 h
            stop_early: true
          - plan: heat
          - repeat: 2
        """
    errors = errors_of(load_experiment, write(tmp_path, text), registry=REGISTRY)
    assert located(errors) == {
        ("cell.kind", 4),
        ("cell.thickness", 5),
        ("cell.colour", 7),
        ("steps[0].temperature", 10),
        ("steps[1].current_density", 12),
        ("steps[1].stop_early", 14),
        ("steps[2].plan", 15),
        ("steps[3].plan", 16),
    }


# ---- cross-checks against the lab ---------------------------------------------------------------
def test_lithium_melting_point_is_refused_with_the_reason(tmp_path, lab):
    text = EXPERIMENT.replace("temperature: 30 degC", "temperature: 180.5 degC")
    (error,) = errors_of(load_experiment, write(tmp_path, text), lab=lab, registry=REGISTRY)
    assert (error.field, error.line) == ("steps[0].temperature", 9)
    assert "would melt the cell's lithium (Li melts at 180.5 degC)" in error.message


def test_just_below_the_melting_point_is_allowed(tmp_path, lab):
    text = EXPERIMENT.replace("temperature: 30 degC", "temperature: 180 degC")
    assert load_experiment(write(tmp_path, text), lab=lab, registry=REGISTRY).steps[0].kwargs["temperature"] == pytest.approx(453.15)


def test_a_blocking_cell_may_go_as_hot_as_the_chamber(tmp_path, lab):
    text = EXPERIMENT.replace("kind: symmetric", "kind: blocking").replace("temperature: 30 degC", "temperature: 200 degC")
    load_experiment(write(tmp_path, text), lab=lab, registry=REGISTRY)
    (error,) = errors_of(load_experiment, write(tmp_path, text.replace("200 degC", "201 degC")), lab=lab, registry=REGISTRY)
    assert "outside the chamber's range [-40 degC, 200 degC]" in error.message


def test_pressure_past_the_rig_limit(tmp_path, lab):
    text = EXPERIMENT + "  - plan: set_pressure\n    pressure: 25 MPa\n"
    (error,) = errors_of(load_experiment, write(tmp_path, text), lab=lab, registry=REGISTRY)
    assert (error.field, error.line) == ("steps[2].pressure", 16)
    assert "25 MPa is outside the rig's range [0 MPa, 20 MPa]" in error.message


def pulse(potentiostat, *, density: Annotated[float, Unit("mA/cm^2", gt=0), LabLimit("current")],
          level: Annotated[float, Unit("mA/cm^2", gt=0)] = 0.1, md: dict | None = None):
    """A plan whose current density has neither of the names plating plans use."""
    yield from []


PULSE = """\
name: test
cell:
  id: LLZTO-T1
  kind: symmetric
  thickness: 1.2 mm
  electrode_area: 1 cm^2
steps:
  - plan: pulse
    density: {density} mA/cm^2
    level: 50 mA/cm^2
"""


@pytest.mark.parametrize("density, refused", [(0.05, False), (9.9, False), (10.1, True), (50.0, True)])
def test_the_lab_limit_follows_the_annotation_whatever_the_argument_is_called(tmp_path, lab, density, refused):
    # 1 cm^2 under the lab's 10 mA limit: up to 10 mA/cm^2; ``level`` (no LabLimit) is not a setpoint
    path, registry = write(tmp_path, PULSE.format(density=density)), {**REGISTRY, "pulse": pulse}
    if refused:
        (error,) = errors_of(load_experiment, path, lab=lab, registry=registry)
        assert (error.field, error.line) == ("steps[0].density", 9)
        assert "above the potentiostat's current limit of 10 mA" in error.message
    else:
        assert load_experiment(path, lab=lab, registry=registry).steps[0].kwargs["density"] == pytest.approx(density * 10)


def test_a_lab_limit_names_a_limit_the_lab_file_has():
    with pytest.raises(ValueError, match="the lab limits are temperature, pressure, current, voltage"):
        LabLimit("density")


def test_current_past_the_potentiostat_limit_gives_current_and_limit_in_ma(tmp_path, lab):
    text = EXPERIMENT.replace("electrode_diameter: 2 mm", "electrode_area: 1 cm^2").replace("0.5 mA/cm^2", "12 mA/cm^2")
    (error,) = errors_of(load_experiment, write(tmp_path, text), lab=lab, registry=REGISTRY)
    assert (error.field, error.line) == ("steps[1].current_density", 13)
    assert "is 12 mA, above the potentiostat's current limit of 10 mA" in error.message


def test_without_a_lab_no_cross_checks_run(tmp_path):
    text = EXPERIMENT.replace("temperature: 30 degC", "temperature: 500 degC")
    experiment = load_experiment(write(tmp_path, text), registry=REGISTRY)
    assert [e.field for e in check_against_lab(experiment, load_lab(write(tmp_path, LAB, "lab.yaml")))] == [
        "steps[0].temperature", "steps[0].temperature"  # outside the chamber, and lithium melts
    ]


# ---- step models from plan signatures -----------------------------------------------------------
def test_step_model_comes_from_the_keyword_only_parameters():
    model = build_step_model(plate)
    assert list(model.model_fields) == [
        "current_density", "max_capacity", "max_duration", "direction", "reverse_after", "points_per_decade"
    ]
    assert not RUNNER_FILLED & set(model.model_fields) and "md" not in model.model_fields
    assert model.model_fields["current_density"].is_required()
    assert model.model_fields["max_duration"].default == 86400.0


def test_step_model_types_follow_the_signature():
    model = build_step_model(plate)
    step = model(current_density="1 mA/cm^2", direction="strip", reverse_after=True, points_per_decade=5)
    assert (step.current_density, step.direction, step.reverse_after, step.points_per_decade) == (10.0, "strip", True, 5)
    assert model(current_density="1 mA/cm^2", max_capacity=None).max_capacity is None
    with pytest.raises(Exception, match="'plate' or 'strip'"):
        model(current_density="1 mA/cm^2", direction="sideways")


def test_parameter_descriptions_come_from_the_numpydoc_docstring():
    fields = build_step_model(plate).model_fields
    assert fields["current_density"].description == "Plating current density, A/m^2 (YAML: e.g. ``0.5 mA/cm^2``)."
    assert fields["max_capacity"].description == fields["max_duration"].description == "Stop limits."
    assert fields["direction"].description is None
    assert "str" not in parameter_docs(plate)  # the Returns section is not a parameter
    assert parameter_docs(set_pressure) == {}


def test_a_plan_argument_named_like_a_step_key_is_a_programming_error():
    def clash(potentiostat, *, repeat: int = 1, md=None):
        yield from []

    with pytest.raises(TypeError, match="clashes with a step key"):
        build_step_model(clash)


# ---- the invalid example files ------------------------------------------------------------------
# Each file in tests/config_cases/ starts with its expected error: "# expect:" (a part of the
# message), "# line:", and in the newer ones "# field:" ("-" for an error of the whole file) and
# "# file:" when the error is in another file (a lab file the case points at, under labs/).
INVALID_CASES = sorted(CASES.glob("*.yaml"))


def case_header(path: Path) -> dict[str, str]:
    header = {}
    for line in path.read_bytes().split(b"\n")[:4]:  # the rest may be binary or Latin-1 on purpose
        found = re.fullmatch(r"# (expect|line|field|file): (.+)", line.decode("utf-8", "replace"))
        if found:
            header[found.group(1)] = found.group(2)
    assert {"expect", "line"} <= set(header), f"{path.name}: no '# expect:' and '# line:' header"
    return header


def case_errors(path: Path, lab: LabConfig) -> list[ConfigError]:
    """Load a case as ``labctl check`` does: the experiment alone, its lab, then the two together."""
    if path.name.startswith("lab-"):
        return errors_of(load_lab, path)
    registry = real_registry()
    try:
        experiment = load_experiment(path, registry=registry)
    except ConfigErrors as err:
        return list(err)
    try:
        lab = load_lab(experiment.lab_path) if experiment.lab_path is not None else lab
    except ConfigErrors as err:
        return list(err)
    return errors_of(load_experiment, path, lab=lab, registry=registry)


@pytest.mark.parametrize("path", INVALID_CASES, ids=lambda p: p.stem)
def test_invalid_example_file(path, lab):
    header = case_header(path)
    errors = case_errors(path, lab)
    expect, line = header["expect"], int(header["line"])
    matching = [e for e in errors if expect in str(e)]
    assert matching, f"no error contains {expect!r}:\n" + "\n".join(map(str, errors))
    assert [e.line for e in matching] == [line] * len(matching), "\n".join(map(str, errors))
    if "field" in header:
        assert [e.field for e in matching] == [None if header["field"] == "-" else header["field"]] * len(matching)
    expected_file = path.parent / header["file"] if "file" in header else path
    assert [Path(e.path) for e in matching] == [expected_file] * len(matching)
    assert all("\n" not in str(e) for e in errors), "each error is one line"


def test_there_are_enough_invalid_examples():
    assert len(INVALID_CASES) >= 76  # the first 36, and 40 more for issue 11
    assert sum("field" in case_header(p) for p in INVALID_CASES) >= 40


def test_no_message_quotes_a_private_file_a_lab_reference_points_at(lab):
    (error,) = case_errors(CASES / "exp-lab-is-another-file.yaml", lab)
    assert "do-not-print-me" not in str(error) and "hunter2" not in str(error)


# That no invalid file gets as far as the dry run (nor builds an instrument or a simulator) is
# tested through `labctl check` in tests/test_protocol_plans.py, over this same corpus.


# ---- the example files against the real plans ---------------------------------------------------
def real_registry() -> dict:
    plans = pytest.importorskip("plans")
    registry = getattr(plans, "PLANS", None)
    if not registry:
        pytest.skip("plans.PLANS is not written yet")
    return registry


def test_every_lab_file_in_configs_loads():
    labs = [p for p in CONFIGS.glob("*.yaml") if p.name.startswith("lab")]
    assert labs
    for path in labs:
        load_lab(path)


def test_the_overnight_plating_experiment_validates_against_the_real_plans(lab):
    registry = real_registry()
    path = CONFIGS / "plating-overnight.yaml"
    experiment = load_experiment(path, lab=load_lab(path.parent / load_experiment(path, registry=registry).lab), registry=registry)
    assert [s.plan for s in experiment.steps] == ["set_temperature", "set_pressure", "rest", "plate"]
    cell = experiment.cell
    assert (cell.id, cell.kind, cell.surface) == ("LLZTO-1100C-07", "symmetric", "lithiophobic")
    assert cell.thickness == pytest.approx(1.2e-3) and cell.electrode_area_m2 == pytest.approx(math.pi * 1e-6)
    plate_args = experiment.steps[3].kwargs
    assert plate_args["current_density"] == pytest.approx(5.0)  # 0.5 mA/cm^2 in A/m^2
    assert plate_args["max_duration"] == pytest.approx(86400.0)
    assert experiment.lab_path == path.parent / "lab-sim.yaml"


def test_every_experiment_file_in_configs_validates_against_its_lab():
    registry = real_registry()
    for path in CONFIGS.glob("*.yaml"):
        if path.name.startswith("lab"):
            continue
        experiment = load_experiment(path, registry=registry)
        lab = load_lab(experiment.lab_path or CONFIGS / "lab-sim.yaml")
        load_experiment(path, lab=lab, registry=registry)


def test_load_experiment_defaults_to_the_plans_registry():
    real_registry()
    assert load_experiment(CONFIGS / "plating-overnight.yaml").steps[0].plan == "set_temperature"


def test_sim_overrides_stay_a_plain_dict_for_the_simulator_to_check(tmp_path):
    text = EXPERIMENT.replace("  electrode_diameter: 2 mm\n", "  electrode_diameter: 2 mm\n  sim: {bulk_conductivity_25c: 0.05, grain_boundary: true, note: text}\n")
    cell = load_experiment(write(tmp_path, text), registry=REGISTRY).cell
    assert cell.sim == {"bulk_conductivity_25c": 0.05, "grain_boundary": True, "note": "text"}
    assert cell.to_metadata()["sim"] == cell.sim
