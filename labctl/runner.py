"""Run an experiment file: every step a bluesky run, all tied by one sequence id."""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bluesky.utils import RunEngineInterrupted

from labctl.core.clock import VirtualClock
from labctl.config import experiment_roles
from labctl.lab import Lab, build_lab, cell_parameters
from labctl.session import make_run_engine, signals_held
from plans.guards import Guard, Guards

ABORTED_BY_OPERATOR = "aborted by the operator while paused (Ctrl-C)"


@dataclass
class StepOutcome:
    """What one step did: its run, how it ended and why."""

    index: int
    plan: str
    uid: str | None
    exit_status: str
    reason: str


def device_arguments(plan: Callable, lab: Lab) -> list:
    """Return the devices a plan takes positionally, matched by role name (the keys of ``Lab.devices()``)."""
    devices = lab.devices()
    return [
        devices[p.name]
        for p in inspect.signature(plan).parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name in devices
    ]


def runner_arguments(plan: Callable, experiment, lab: Lab | None = None) -> dict:
    """Return the arguments the runner fills in from the cell metadata, the guards section and the
    lab file (each instrument's ``lead_resistance``, for the fits)."""
    names = inspect.signature(plan).parameters
    cell = experiment.cell
    filled = {"electrode_area": cell.electrode_area_m2, "thickness": cell.thickness, "cell_kind": cell.kind,
              "contains_lithium": cell.contains_lithium, "guards": step_guards(experiment)}
    if lab is not None:
        filled["lead_resistances"] = {role: getattr(config, "lead_resistance", None)
                                      for role, config in lab.config.instruments if config is not None}
    return {k: v for k, v in filled.items() if k in names}


def step_guards(experiment) -> Guards | None:
    """A fresh ``plans.guards.Guards`` for one step, from the experiment file's guards section."""
    if experiment.guards is None:
        return None
    policies = {name: Guard(**policy.model_dump()) for name, policy in experiment.guards if policy is not None}
    return Guards(**policies)


def step_metadata(experiment, lab: Lab, sequence_id: str, index: int, step, repeat: int) -> dict:
    """The start-document metadata of one step: sequence, experiment, step, cell and lab."""
    return {
        "sequence_id": sequence_id,
        "experiment": experiment.name,
        "step_index": index,
        "step_label": step.label or step.plan,
        "repeat_index": repeat,
        "cell": experiment.to_metadata(),
        "lab": lab.config.name,
        "simulated": bool(lab.config.simulated),
        "sim_seed": lab.seed if lab.config.simulated else None,
        "clock_time": lab.clock.now(),  # when the step starts on the session clock, which stamps the data
    }


def argument_metadata(plan: Callable, step) -> dict:
    """The plan's arguments as written in the file (``"0.5 mA/cm^2"``), beside ``plan_args``' SI values.

    The SI unit of each value is in ``plan_args_units`` (:func:`plans.stubs.plan_metadata`).
    """
    written = {name: value if isinstance(value, (int, float, bool, list)) else str(value)
               for name, value in step.arguments.items()}
    return {"plan_args_as_written": written}


class ExperimentRunner:
    """Runs the steps of an experiment on a lab, storing every document through ``storage``.

    Parameters
    ----------
    experiment : Experiment
        The validated experiment file.
    lab_config : LabConfig
        The validated lab file.
    storage : Storage
        Where documents go (journal first, then databroker).
    pace : float, optional
        Simulated seconds per wall second, for demos.
    registry : dict, optional
        Plan names to functions (default ``plans.PLANS``).
    seed : int, optional
        The simulators' seed (``labctl run --seed``); default the experiment's ``seed``, else the lab file's.
    """

    def __init__(self, experiment, lab_config, storage, pace: float | None = None, registry=None,
                 seed: int | None = None):
        from plans import PLANS

        self.experiment = experiment
        self.registry = registry or PLANS
        self.storage = storage
        clock = VirtualClock() if lab_config.simulated else None
        self.lab = build_lab(lab_config, cell_parameters(experiment.cell), Path(storage.assets_dir), clock,
                             roles=experiment_roles(experiment, self.registry),  # no DLL for a chamber-only run
                             seed=seed if seed is not None else experiment.seed)  # the command line, the file, the lab's
        # The chamber's melting-point interlock follows the cell (armed unless it has no lithium).
        if self.lab.chamber is not None:
            self.lab.chamber.contains_lithium.put(experiment.cell.contains_lithium)
        self.RE = make_run_engine(self.lab.clock, pace)
        self.RE.subscribe(storage.callback)
        self.sequence_id = str(uuid.uuid4())
        self.safe_actions: list = []
        self.interrupted: str | None = None  # why the experiment ended between steps, if a signal ended it

    def run(self, on_step: Callable[[int, object], None] | None = None,
            on_pause: Callable[[], str] | None = None) -> list[StepOutcome]:
        """Run every step in order; stop at the first step that does not end successfully.

        Parameters
        ----------
        on_step : callable, optional
            Called with (step index, step) as each step starts.
        on_pause : callable, optional
            Called when the RunEngine pauses (Ctrl-C) with the cell at open circuit; returns
            ``"resume"``, ``"abort"``, or the reason to abort with (e.g. a signal's). Without it a
            pause aborts the step.

        A KeyboardInterrupt outside a plan (between steps; SIGTERM and SIGHUP are raised as one
        by ``labctl run``) ends the experiment there, with its message in ``interrupted``.
        Afterwards ``safe_actions`` says what :meth:`labctl.lab.Lab.make_safe` did.
        """
        outcomes = []
        try:
            for index, step in enumerate(self.experiment.steps):
                for repeat in range(step.repeat):
                    if on_step is not None:
                        on_step(index, step)
                    outcome = self.run_step(index, step, repeat, on_pause)
                    outcomes.append(outcome)
                    if outcome.exit_status != "success":
                        return outcomes
            return outcomes
        except KeyboardInterrupt as interrupt:
            self.interrupted = str(interrupt) or "interrupted (Ctrl-C) between steps"
            return outcomes
        finally:  # the experiment is over, however it ended: leave the lab safe (see Lab.make_safe)
            with signals_held():
                self.safe_actions = self.lab.make_safe()

    def run_step(self, index: int, step, repeat: int = 0, on_pause: Callable[[], str] | None = None) -> StepOutcome:
        plan = self.registry[step.plan]
        md = {**step_metadata(self.experiment, self.lab, self.sequence_id, index, step, repeat),
              **argument_metadata(plan, step)}
        kwargs = {**step.kwargs, **runner_arguments(plan, self.experiment, self.lab)}
        starts: list[str] = []
        stops: list[dict] = []
        tokens = [self.RE.subscribe(lambda name, doc: starts.append(doc["uid"]), "start"),
                  self.RE.subscribe(lambda name, doc: stops.append(doc), "stop")]
        try:
            result = self._until_done(plan(*device_arguments(plan, self.lab), **kwargs, md=md), on_pause)
        except Exception as err:  # the RunEngine has closed the run as failed; say why
            return StepOutcome(index, step.plan, starts[-1] if starts else None, "fail", f"{type(err).__name__}: {err}")
        finally:
            for token in tokens:
                self.RE.unsubscribe(token)
        reason = result.reason or (result.plan_result if isinstance(result.plan_result, str) else "")
        # A plan that ends its run as failed (plating at the voltage limit) does so without raising,
        # so the RunEngine's own status says success: the stop document says how the run ended.
        status = stops[-1]["exit_status"] if stops and result.exit_status == "success" else result.exit_status
        return StepOutcome(index, step.plan, starts[-1] if starts else None, status, reason)

    def _until_done(self, plan, on_pause):
        """Run ``plan``; each time the RunEngine pauses, resume or abort as ``on_pause`` decides."""
        call = lambda: self.RE(plan)  # noqa: E731
        while True:
            try:
                return call()
            except RunEngineInterrupted:
                if self.RE.state != "paused":  # already aborted (Ctrl-C twice)
                    raise
                answer = on_pause() if on_pause is not None else "abort"
                if answer == "resume":
                    call = self.RE.resume
                else:
                    return self.RE.abort(reason=ABORTED_BY_OPERATOR if answer == "abort" else answer)
