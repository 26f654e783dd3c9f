"""The plans as people read them: each plan's YAML arguments with units, ranges and defaults.

Built from the same step models that validate experiment files (:func:`labctl.config.build_step_model`),
so ``labctl plans`` cannot disagree with ``labctl check``.
"""

from __future__ import annotations

import inspect
import typing
from typing import Callable

from labctl.config import RUNNER_FILLED, build_step_model
from labctl.core.units import Count, Unit, find_unit


def argument_line(name: str, field) -> str:
    """Return one argument: name, unit and range, default (or required), description."""
    # pydantic keeps a field's own Annotated metadata apart; a list keeps its items' in the annotation
    unit = next((m for m in field.metadata if isinstance(m, Unit)), None) or find_unit(field.annotation)
    if unit is not None:
        kind = unit.range_text()
        if typing.get_origin(field.annotation) is list:
            kind = f"list of {kind}"
    else:
        count = next((m for m in field.metadata if isinstance(m, Count)), None)
        kind = count.range_text() if count else getattr(field.annotation, "__name__", str(field.annotation))
    if field.is_required():
        default = "required"
    elif unit is not None and isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
        default = f"default {unit.from_si(field.default):g} {unit.display}"
    else:
        default = f"default {field.default}"
    return f"    {name:<24} {kind:<32} {default:<22} {field.description or ''}".rstrip()


def describe_plan(name: str, plan: Callable) -> list[str]:
    """Return the lines ``labctl plans`` prints for one plan."""
    summary = (inspect.getdoc(plan) or "").splitlines()[0]
    lines = [f"{name}: {summary}"]
    for argument, field in build_step_model(plan).model_fields.items():
        lines.append(argument_line(argument, field))
    filled = [p for p in inspect.signature(plan).parameters if p in RUNNER_FILLED]
    if filled:
        lines.append(f"    (from the cell: {', '.join(filled)})")
    return lines


def describe_plans(registry: dict[str, Callable]) -> str:
    """Return every plan of ``registry`` with its arguments, in the registry's order."""
    return "\n\n".join("\n".join(describe_plan(name, plan)) for name, plan in registry.items())
