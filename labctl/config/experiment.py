"""The experiment file's models: the cell, its steps and their guards."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from labctl.config.documents import Document, Location, dotted
from labctl.config.lab import ConfigModel, Identifier
from labctl.config.problems import raise_problems
from labctl.core.errors import ConfigError
from labctl.core.units import Count, Unit


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
    """The chamber temperature's guard: ``band`` in K (a file writes e.g. ``2 K``)."""
    band: Annotated[float, Unit("K", gt=0, le=50)]  # a difference: "2 K", not "2 degC"


class PressureGuard(Guard):
    """The stack pressure's guard: ``band`` in Pa (a file writes e.g. ``0.5 MPa``)."""
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
