"""A dry run: an experiment on a simulated copy of its lab, on the virtual clock, storing nothing.

``labctl check`` uses it to say how long each step will take before any instrument is touched;
the tests use it to run the example experiments end to end.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import dataclass
from typing import Callable

from labctl.core.clock import VirtualClock
from labctl.lab import Lab, build_simulated_lab, cell_parameters
from labctl.runner import device_arguments, runner_arguments, step_metadata
from labctl.session import make_run_engine


@dataclass
class DryStep:
    """One run of the dry run: which step, how long it took on the virtual clock, how it ended."""

    index: int
    repeat: int
    plan: str
    duration: float
    exit_status: str
    reason: str


def dry_run(experiment, lab_config, on_document: Callable[[str, dict], None] | None = None,
            registry: dict | None = None, inspect: Callable[[Lab], None] | None = None) -> list[DryStep]:
    """Run every step of ``experiment`` on a simulated copy of ``lab_config``; return each step's outcome.

    A real lab's file is simulated with its own limits (its instruments are never opened). The
    dry run stops at the first step that fails, as a real run would. ``on_document`` sees every
    bluesky document, and ``inspect`` the lab with its simulators after the last step (the tests
    compare results with the simulators' state).
    """
    from plans import PLANS

    registry = registry or PLANS
    config = lab_config.model_copy(update={"simulated": True})
    with tempfile.TemporaryDirectory(prefix="labctl-dry-") as assets:
        lab = build_simulated_lab(config, cell_parameters(experiment.cell), assets, VirtualClock(),
                                  seed=getattr(experiment, "seed", None))  # the run's seed, so it predicts the run
        # The chamber's melting-point interlock follows the cell, as in a run.
        if lab.chamber is not None:
            lab.chamber.contains_lithium.put(experiment.cell.contains_lithium)
        try:
            outcomes = _steps(experiment, lab, registry, on_document)
            if inspect is not None:
                inspect(lab)
            return outcomes
        finally:
            lab.close()


def _drop_tracebacks(record: logging.LogRecord) -> bool:
    return record.exc_info is None


def _steps(experiment, lab, registry: dict, on_document) -> list[DryStep]:
    RE = make_run_engine(lab.clock)
    if on_document is not None:
        RE.subscribe(on_document)
    stops: list[dict] = []  # a plan may close its run as failed without raising (plating at the voltage limit)
    RE.subscribe(lambda name, doc: stops.append(doc), "stop")
    # The RunEngine logs a failed plan's traceback ("Run aborted"); the dry run says it in one line.
    logger = RE.log.logger
    logger.addFilter(_drop_tracebacks)
    try:
        return _each_step(experiment, lab, registry, RE, stops)
    finally:
        logger.removeFilter(_drop_tracebacks)


def _each_step(experiment, lab, registry: dict, RE, stops: list[dict]) -> list[DryStep]:
    sequence_id, outcomes = f"dry-run-{uuid.uuid4()}", []
    for index, step in enumerate(experiment.steps):
        plan = registry[step.plan]
        for repeat in range(step.repeat):
            md = step_metadata(experiment, lab, sequence_id, index, step, repeat)
            kwargs = {**step.kwargs, **runner_arguments(plan, experiment, lab)}
            start = lab.clock.now()
            try:
                result = RE(plan(*device_arguments(plan, lab), **kwargs, md=md))
                status, reason = result.exit_status, result.reason or str(result.plan_result or "")
                if status == "success" and stops:
                    status = stops[-1]["exit_status"]
            except Exception as err:  # the RunEngine has closed the run as failed; say why, in one line
                status, reason = "fail", bug_line(index, step.plan, err)
            outcomes.append(DryStep(index, repeat, step.plan, lab.clock.now() - start, status, reason))
            if status != "success":
                return outcomes
    return outcomes


def bug_line(index: int, plan: str, err: BaseException) -> str:
    """Return a step that raised in the dry run as one line: a file that passed the checks should not.

    The checks at load (labctl.config, labctl.safety) are meant to refuse every file a run would
    fail on; an exception here is a gap in them, so it is reported as labctl's bug, with the step.
    """
    message = " ".join(str(err).split())[:300]
    return f"labctl bug: step {index + 1} ({plan}) raised {type(err).__name__}: {message} (please report it)"


def format_duration(seconds: float) -> str:
    """Return a duration as people read it: ``45 s``, ``12.5 min``, ``3.2 h``, ``2.1 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
