"""Loading lab and experiment files: read, validate, check the steps, and check against the lab."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from labctl.config.documents import Document, read_yaml
from labctl.config.experiment import Experiment
from labctl.config.lab import LabConfig
from labctl.config.limits import check_against_lab, check_roles
from labctl.config.problems import validate
from labctl.config.steps import check_steps
from labctl.core.errors import ConfigError, ConfigErrors


def load_lab(path: str | Path) -> LabConfig:
    """Load and validate a lab file.

    Raises
    ------
    ConfigErrors
        Every problem in the file, each with its line and field.
    """
    document = read_yaml(path)
    if document.data is not None and (not isinstance(document.data, dict) or "instruments" not in document.data):
        # Say so without quoting it: a lab: reference may point at any file, a private one too.
        raise ConfigErrors([*document.problems, document.error((), "not a lab file: it has no instruments section "
                                                                   "(see configs/lab-sim.yaml)")])
    lab, errors = validate(LabConfig, document)
    if errors:
        raise ConfigErrors(errors)
    lab._path = Path(path)
    lab._document = document
    return lab


def load_experiment(
    path: str | Path, lab: LabConfig | None = None, registry: dict[str, Callable] | None = None
) -> Experiment:
    """Load and validate an experiment file, and check it against ``lab``'s limits if given.

    Parameters
    ----------
    path : str or Path
        The experiment file.
    lab : LabConfig, optional
        The lab it will run on; its limits are checked with :func:`check_against_lab`.
    registry : dict, optional
        Plan names to plan functions (default ``plans.PLANS``).

    Raises
    ------
    ConfigErrors
        Every problem in the file, each with its line and field.
    """
    if registry is None:
        from plans import PLANS as registry  # lazily: labctl.config must import without the plans
    document = read_yaml(path)
    experiment, errors = validate(Experiment, document)
    arguments, step_errors = check_steps(document, registry)
    errors += step_errors
    if experiment is not None and not step_errors:
        _attach(experiment, document, arguments)
        errors += _lab_file_problems(experiment)
        if lab is not None:  # the limits of an instrument the lab lacks cannot be checked: say it is missing
            errors += check_roles(experiment, lab, registry) or check_against_lab(experiment, lab, registry)
    if errors:
        raise ConfigErrors(_unique(errors))
    return experiment


def _unique(errors: list[ConfigError]) -> list[ConfigError]:
    """Return the errors without repeats (a rule checked with and without the lab says the same twice)."""
    return list({str(error): error for error in errors}.values())


def _attach(experiment: Experiment, document: Document, arguments: dict[int, dict]) -> None:
    experiment._document = document
    for index, step in enumerate(experiment.steps):
        step._kwargs = arguments[index]
        step._line = document.line(("steps", index))


def _lab_file_problems(experiment: Experiment) -> list[ConfigError]:
    if experiment.lab_path is None or experiment.lab_path.is_file():
        return []
    return [experiment.error(("lab",), f"no lab file at {experiment.lab_path} (paths are relative to this file)")]
