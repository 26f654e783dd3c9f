"""Step models generated from plan signatures: a plan and its YAML cannot drift apart."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from labctl import safety
from labctl.config.documents import Document, Location
from labctl.config.experiment import STEP_KEYS
from labctl.config.problems import translate
from labctl.core.errors import ConfigError


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


def check_steps(document: Document, registry: dict[str, Callable]) -> tuple[dict[int, dict], list[ConfigError]]:
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
