"""Cross-checks of an experiment against the lab it runs on: the instruments its steps need, and
everything the lab's limits, its instruments or the cell's lithium forbid (:mod:`labctl.safety`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from labctl import safety
from labctl.config.documents import dotted
from labctl.config.experiment import Experiment
from labctl.config.lab import ROLES, LabConfig
from labctl.core.errors import ConfigError


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


def check_against_lab(experiment: Experiment, lab: LabConfig, registry: dict[str, Callable] | None = None
                      ) -> list[ConfigError]:
    """Return everything the lab's limits, its instruments or the cell's lithium forbid (:mod:`labctl.safety`).

    Each step's plan call (setpoints, sweeps on the instrument the step runs on, GEIS amplitudes,
    sizes), the guards, and the lab's own defaults for this cell (located in the lab file).
    """
    errors = []
    for index, step in enumerate(experiment.steps):
        for location, message in safety.plan_problems(step.plan, step.kwargs, lab, experiment.cell, registry):
            errors.append(experiment.error(("steps", index, *location), message))
    steps = [(step.plan, step.kwargs) for step in experiment.steps]
    errors += [experiment.error(location, message)
               for location, message in safety.guard_problems(experiment.guards, steps, experiment.cell)]
    for location, message in safety.lab_default_problems(lab, experiment.cell):
        document = lab._document
        errors.append(document.error(location, message) if document is not None
                      else ConfigError(None, None, dotted(location), message))
    return errors
