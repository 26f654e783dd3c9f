"""The lab's plans as bluesky-queueserver can validate them.

queueserver 0.0.25 builds a pydantic model from each plan's signature; the
``Annotated[float, Unit(...)]`` hints of labctl's plans make that model fail ("`Model` is not fully
defined"). :func:`queue_plans` restates every plan with plain types (``float``, ``int``,
``list[float]``) and passes each quantity's bounds, in SI, as queueserver's ``min``/``max``: the
unit's own bounds narrowed by the lab's limits (chamber range, rig range, voltage window). Items
therefore carry SI values, as ``labctl submit`` writes them. Queueserver's bounds are inclusive, so
the wrapper also runs labctl's full rule set (:func:`labctl.safety.call_problems`) before the plan
starts: ``> 0`` and the cell's current limit are checked there.

The devices are the rig's (a queue serves one rig) and the arguments ``labctl run`` fills from the
experiment file (electrode area, thickness, guards...) come from the item's ``cell`` and ``guards``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable

from labctl.core.units import Count, Unit, ureg

# Plan arguments that are setpoints bounded by an instrument's range in the lab file (SI pairs).
LAB_RANGES: dict[str, Callable[[Any], tuple[float, float] | None]] = {
    "temperature": lambda lab: lab.instruments.chamber and lab.instruments.chamber.temperature_range,
    "temperatures": lambda lab: lab.instruments.chamber and lab.instruments.chamber.temperature_range,
    "test_temperature": lambda lab: lab.instruments.chamber and lab.instruments.chamber.temperature_range,
    "pressure": lambda lab: lab.instruments.rig and lab.instruments.rig.pressure_range,
    "voltage": lambda lab: lab.instruments.potentiostat and lab.instruments.potentiostat.voltage_window,
}


def _si(value: float, display: str) -> float:
    return float(f"{ureg.Quantity(value, display).to_base_units().magnitude:.15g}")


def _marker(hint: Any) -> Unit | Count | None:
    return next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, (Unit, Count))), None)


def restate(hint: Any) -> tuple[Any, Unit | Count | None]:
    """Return a plain type for a plan's hint (``Annotated[float | None, Unit]`` -> ``Optional[float]``) and its marker."""
    marker = _marker(hint)
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if typing.get_origin(base) is list:  # list[Annotated[float, Unit]]: the items' unit
        item = typing.get_args(base)[0]
        return typing.List[restate(item)[0]], marker or _marker(item)
    arguments = typing.get_args(base)
    if type(None) in arguments:  # X | None
        inner = restate(next(a for a in arguments if a is not type(None)))
        return typing.Optional[inner[0]], marker or inner[1]
    if typing.get_origin(base) is typing.Annotated:
        return restate(base)
    return base, marker


def bounds(name: str, marker: Unit | Count | None, lab) -> dict[str, float]:
    """Return queueserver's inclusive ``min``/``max`` of one argument, in SI: the marker's, narrowed by the lab's."""
    low = high = None
    if isinstance(marker, Unit):
        given = [b for b in (marker.gt, marker.ge) if b is not None]
        low = _si(given[0], marker.display) if given else None
        given = [b for b in (marker.lt, marker.le) if b is not None]
        high = _si(given[0], marker.display) if given else None
    elif isinstance(marker, Count):
        low, high = marker.ge, marker.le
    limits = LAB_RANGES[name](lab) if name in LAB_RANGES else None
    if limits:
        low = limits[0] if low is None else max(low, limits[0])
        high = limits[1] if high is None else min(high, limits[1])
    return {key: value for key, value in (("min", low), ("max", high)) if value is not None}


def queue_plan(name: str, plan: Callable, lab_config, lab, registry: dict[str, Callable],
               steps: Callable | None = None) -> Callable:
    """Return ``plan`` restated for the queue: keyword arguments in SI plus ``cell`` and ``guards``.

    ``steps(start)``, if given, runs the plan ``start()`` returns as one step of its file
    (:meth:`labctl.queue.sequences.Sequences.run`: skipped when an earlier step of it failed).
    """
    from bluesky_queueserver import parameter_annotation_decorator

    from labctl.config import RUNNER_FILLED, parameter_docs

    hints = typing.get_type_hints(plan, include_extras=True)
    docs = parameter_docs(plan)
    parameters, described = [], {}
    for p in inspect.signature(plan).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name == "md" or p.name in RUNNER_FILLED:
            continue
        plain, marker = restate(hints.get(p.name, Any))
        parameters.append(p.replace(annotation=plain))
        described[p.name] = {"description": docs.get(p.name) or p.name, **bounds(p.name, marker, lab_config)}
    parameters.append(inspect.Parameter("cell", inspect.Parameter.KEYWORD_ONLY, annotation=dict))
    parameters.append(inspect.Parameter("guards", inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=typing.Optional[dict]))
    described["cell"] = {"description": "the cell, as in a start document's cell metadata (labctl submit writes it)"}
    described["guards"] = {"description": "the experiment's guards section, in SI (labctl submit writes it)"}

    @functools.wraps(plan)
    def run(**kwargs):
        start = functools.partial(call_plan, name, plan, lab_config, lab, registry, kwargs)
        return (yield from (steps(start) if steps is not None else start()))

    run.__signature__ = inspect.Signature(parameters)
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    del run.__wrapped__  # queueserver must see the restated signature, not the plan's
    summary = (inspect.getdoc(plan) or name).splitlines()[0]
    return parameter_annotation_decorator({"description": summary, "parameters": described})(run)


def call_plan(name: str, plan: Callable, lab_config, lab, registry, kwargs: dict):
    """Check one queued call against labctl's rules, fill in the devices and the cell, run the plan."""
    from labctl.runner import device_arguments
    from labctl.safety import UnsafePlanCall, call_problems

    kwargs = dict(kwargs)
    cell_md, guards = kwargs.pop("cell"), kwargs.pop("guards", None)
    cell = cell_from_metadata(cell_md)
    problems = call_problems(name, kwargs, lab_config, cell, registry)
    if problems:
        raise UnsafePlanCall(name, problems)
    return (yield from plan(*device_arguments(plan, lab), **kwargs, **filled_arguments(plan, cell, guards, lab_config)))


def filled_arguments(plan: Callable, cell, guards: dict | None, lab_config) -> dict:
    """The arguments ``labctl run`` fills from the experiment (:func:`labctl.runner.runner_arguments`), from an item."""
    from plans.guards import Guard, Guards

    names = inspect.signature(plan).parameters
    policies = {key: Guard(**policy) for key, policy in (guards or {}).items() if policy is not None}
    filled = {"electrode_area": cell.electrode_area_m2, "thickness": cell.thickness, "cell_kind": cell.kind,
              "contains_lithium": cell.contains_lithium, "guards": Guards(**policies) if guards else None,
              "lead_resistances": {role: getattr(config, "lead_resistance", None)
                                   for role, config in lab_config.instruments if config is not None}}
    return {key: value for key, value in filled.items() if key in names}


def cell_from_metadata(md: dict):
    """Rebuild the experiment's :class:`labctl.config.Cell` from its start-document metadata (``to_metadata``)."""
    from labctl.config import Cell

    written = md.get("as_written") or {}
    size = ({"electrode_diameter": written["electrode_diameter"]} if md.get("electrode_diameter") is not None
            else {"electrode_area": written.get("electrode_area")})
    keys = ("id", "kind", "electrolyte", "electrode_material", "mg_fraction", "surface", "treatment",
            "relative_density", "sim")
    values = {key: md[key] for key in keys if md.get(key) is not None}
    return Cell.model_validate({**values, "thickness": written.get("thickness"), **size})


def queue_plans(lab_config, lab, registry: dict[str, Callable] | None = None,
                steps: Callable | None = None) -> dict[str, Callable]:
    """Every plan of ``registry`` (default ``plans.PLANS``) restated for the queue, by name (``steps``: see :func:`queue_plan`)."""
    if registry is None:
        from plans import PLANS as registry
    return {name: queue_plan(name, plan, lab_config, lab, registry, steps) for name, plan in registry.items()}
